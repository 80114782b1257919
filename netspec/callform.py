"""DSL values written as calls, `adam(0.01, beta1=0.9)` or a bare `adam`, as Pydantic input.

The expander hands a call over as `{"name": ..., "args": [positional...], **keywords}`; a
`call_form` validator maps the positional values onto field names, so every model that takes
such values (initialisers, optimizers, schedules, data sources) shares one rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BeforeValidator


def call_form(
    positional: Mapping[str, tuple[str, ...]],
    alias: Mapping[str, str] | None = None,
    known: Callable[[str], None] | None = None,
) -> Any:
    """A BeforeValidator turning `name` or `name(args, k=v)` into `{"name": name, k: v, ...}`.

    `positional` names the fields that positional values fill, per name; `alias` maps other
    spellings (`msra` -> `he_normal`); `known`, when given, raises for an unknown name.
    """
    aliases = dict(alias or {})

    def coerce(value: Any) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if not (isinstance(value, dict) and "name" in value):
            return value
        name = str(value["name"])
        if known is not None:
            known(name)
        name = aliases.get(name, name)
        out = {k: v for k, v in value.items() if k not in ("name", "args")}
        names = positional.get(name, ())
        args = value.get("args", [])
        if len(args) > len(names):
            raise ValueError(f"{name}(...) takes at most {len(names)} positional value(s)")
        out.update(zip(names, args, strict=False))
        out["name"] = name
        return out

    return BeforeValidator(coerce)


def dsl(value: Any, *, words: bool = False) -> str:
    """A value as a spec writes it: true, "text", [3, 3], adam(...): the one formatter of DSL
    values, for messages, signatures and generated specs. `words` writes strings bare (they
    are choice words such as `same`) and floats short (1e-05), as signatures show defaults."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if words else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dsl(v, words=words) for v in value) + "]"
    if isinstance(value, dict) and "name" in value:
        return f"{value['name']}(...)"
    if isinstance(value, float) and words:
        return f"{value:g}"
    return repr(value)
