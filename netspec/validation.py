"""Pydantic's validation errors as located, plain-worded diagnostics: one per attribute, at the
attribute's span, with a suggestion from the words the attribute accepts (read from its type
and from validators' structured error context, never parsed back out of a message).
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from netspec.callform import dsl
from netspec.errors import Diagnostic, NetspecError, Severity, Span, suggest
from netspec.synonyms import ATTRIBUTES, attribute_hint
from netspec.values import kind, plain, symbols

_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}
_TYPE_TAGS = {"int", "float", "str", "bool", "tuple", "list", "dict", "none"}


def _relevant(errors: list[ErrorDetails]) -> ErrorDetails:
    """One error per attribute: Pydantic reports one per union branch; keep the telling one."""
    if len(errors) == 1:
        return errors[0]
    got = errors[0].get("input")
    if isinstance(got, str):
        for e in errors:
            if e["type"] == "literal_error":
                return e
    for e in errors:
        if not e["type"].endswith(("_type", "_parsing")) and e["type"] != "literal_error":
            return e
    return errors[0]


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
}


def _accepted(errors: list[ErrorDetails]) -> str | None:
    """What an attribute accepts, from its type errors: 'an integer or a list of integers'.

    None when some error is about something else than the value's type (a bound, a rule).
    """
    words: list[str] = []
    for e in errors:
        if any(isinstance(x, int) for x in e["loc"]):  # an item of a list is wrong
            word = "a list of integers" if e["type"].startswith("int") else "a list"
        elif e["type"] in _TYPE_WORDS:
            word = _TYPE_WORDS[e["type"]]
        elif e["type"] in ("tuple_type", "list_type"):
            ints = any("int" in str(x) for x in e["loc"])
            word = "a list of integers" if ints else "a list"
        elif e["type"] == "literal_error":
            word = str(e.get("ctx", {}).get("expected", ""))
        else:
            return None
        if word not in words:
            words.append(word)
    if not words:
        return None
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _choices(
    errors: list[ErrorDetails], cls: type[BaseModel] | None, key: str, nested: list[str]
) -> list[str]:
    """The words an attribute accepts: its type's Literal values (and the tags of a tagged
    union such as optimizer, when the tag is what is wrong), and the `choices` a validator put
    in its error's context."""
    words: list[str] = []
    if cls is not None and key in cls.model_fields and not nested:
        tags = any(e["type"] == "union_tag_invalid" for e in errors)
        words += _literal_words(cls.model_fields[key].annotation, tags)
    for e in errors:
        words += [str(w) for w in e.get("ctx", {}).get("choices", ())]
    return list(dict.fromkeys(words))


def _literal_words(annotation: Any, tags: bool, depth: int = 0) -> list[str]:
    """String Literal values in a type, through unions, Annotated and containers; with `tags`,
    a model in a union gives its tag (its `name` or `op` Literal)."""
    if depth > 4:
        return []
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [a for a in typing.get_args(annotation) if isinstance(a, str)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        tag = annotation.model_fields.get("name") or annotation.model_fields.get("op")
        return [] if tag is None or not tags else _literal_words(tag.annotation, tags, depth + 1)
    if origin is not None:  # a union, Annotated, a tuple: look inside
        return [w for a in typing.get_args(annotation) for w in _literal_words(a, tags, depth + 1)]
    return []


@dataclass
class _Context:
    """What every attribute's diagnostic needs to know about the call being validated.

    `values` are what Pydantic saw; `raw` the same before bare names became strings, so a
    misspelt constant (`dense(WIDHT)`) is told apart from a choice word (`padding=same`).
    """

    what: str
    spans: dict[str, Span]
    fallback: Span
    known: list[str]
    layer: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    cls: type[BaseModel] | None = None


@dataclass
class _Attr:
    """One attribute's errors: its key, the path inside it, and what was given."""

    key: str
    path: str
    nested: list[str]
    errors: list[ErrorDetails]
    main: ErrorDetails
    got: Any
    accepted: str | None
    choices: list[str]


def _group(err: ValidationError, c: _Context) -> dict[str, tuple[list[ErrorDetails], list[str]]]:
    """Errors by attribute, with the path inside the attribute (`init.std`)."""
    grouped: dict[str, tuple[list[ErrorDetails], list[str]]] = {}
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        # Discriminated unions put the op's tag first (('dense', 'units')): find the attribute.
        i = next((j for j, x in enumerate(loc) if x in c.spans or x in c.known), None)
        key = loc[i] if i is not None else (loc[0] if loc else "")
        rest = loc[i + 1 :] if i is not None else loc[1:]
        value = c.values.get(key)
        if rest and isinstance(value, dict) and rest[0] == value.get("name"):
            rest = rest[1:]  # the tag of a tagged value such as adam(...)
        rest = [x for x in rest if x.isidentifier() and x not in _TYPE_TAGS]
        grouped.setdefault(key, ([], rest))[0].append(e)
    return grouped


def validation_error(err: ValidationError, c: _Context) -> NetspecError:
    """Pydantic's errors as located diagnostics, one per attribute."""
    grouped = _group(err, c)
    extras = {
        key: attribute_hint(key, c.known) or suggest(key, c.known)
        for key, (es, _) in grouped.items()
        if es[0]["type"] == "extra_forbidden"
    }
    diags = []
    for key, (errors, nested) in grouped.items():
        main = _relevant(errors)
        attr = _Attr(
            key,
            ".".join([key, *nested]),
            nested,
            errors,
            main,
            main.get("input"),
            _accepted(errors),
            _choices(errors, c.cls, key, nested),
        )
        # `dense(10, activation=relu)`: the attribute is the mistake, not the name `relu`.
        unknown = None if main["type"] == "extra_forbidden" else _unknown_name(attr, c)
        found = unknown or _explain(attr, c, extras)
        if found is not None:
            diags.append(found)
    return NetspecError(diags)


def _unknown_name(a: _Attr, c: _Context) -> Diagnostic | None:
    """A bare word the attribute does not accept: a misspelt name, unless it is nearer to one
    of the attribute's own choice words (`padding=sam`)."""
    words = {x.get("input") for x in a.errors if isinstance(x.get("input"), str)}
    symbol = next((x for x in symbols(c.raw.get(a.key)) if x.name in words), None)
    if symbol is None:
        return None
    near = difflib.get_close_matches(
        symbol.name, [*a.choices, *symbol.known, "true", "false"], n=1, cutoff=0.6
    )
    if a.choices and not (near and near[0] not in a.choices):
        return None
    hint = f"did you mean '{near[0]}'?" if near else None
    if hint is None and symbol.known:
        hint = f"names defined here: {', '.join(symbol.known)}"
    elif hint is None:
        hint = f"{a.path} takes {a.accepted or 'a value'}; no constant or parameter "
        hint += "of that name is defined"
    msg = f"{c.what}: {a.path}: unknown name '{symbol.name}'"
    return Diagnostic(Severity.ERROR, msg, symbol.span, hint, c.layer)


def _explain(a: _Attr, c: _Context, extras: dict[str, str | None]) -> Diagnostic | None:
    """The diagnostic for the kind of error Pydantic reported; None when another explains it."""
    kind_ = a.main["type"]
    if kind_ == "extra_forbidden":
        found: tuple[str, str | None] | None = _extra(a, c, extras)
    elif kind_ == "missing":
        found = _missing(a, c, extras)
    elif kind_ == "union_tag_invalid":
        found = _union_tag(a, c)
    elif kind_ in _BOUNDS:
        sign, bound = _BOUNDS[kind_]
        limit = a.main.get("ctx", {}).get(bound)
        found = f"{c.what}: {a.path} must be {sign} {limit}, got {dsl(a.got)}", None
    elif kind_ == "finite_number":
        msg = f"{c.what}: {a.path} must be a finite number, got {dsl(a.got)}"
        found = msg, "NaN and infinity (a literal beyond 1.8e308 overflows to it) have no JSON form"
    elif _is_type_error(a):
        found = _wrong_type(a, c)
    elif kind_ == "literal_error":
        expected = str(a.main.get("ctx", {}).get("expected", ""))
        msg = f"{c.what}: {a.path} must be {expected}, got {a.got!r}"  # quoted as the choices are
        found = msg, suggest(str(a.got), a.choices)
    else:
        found = _other(a, c)
    if found is None:
        return None
    msg, hint = found
    return Diagnostic(Severity.ERROR, msg, c.spans.get(a.key, c.fallback), hint, c.layer)


def _extra(a: _Attr, c: _Context, extras: dict[str, str | None]) -> tuple[str, str | None]:
    if a.nested:
        return f"{c.what}: {a.key} has no attribute '{a.nested[-1]}'", foreign(a.nested[-1])
    hint = extras[a.key] or f"known attributes: {', '.join(c.known) or 'none'}"
    if a.key == "activation":
        act = next(iter(symbols(c.raw.get(a.key))), None)
        name = act.name if act is not None else "ACTIVATION"
        op = c.what.split(" ")[0]
        hint = f"an activation is its own op after the layer: write `{op}(...) {name}`"
    return f"{c.what} has no attribute '{a.key}'", hint


def foreign(name: str) -> str | None:
    """Another framework's name for a nested attribute (`sgd(learning_rate=...)`)."""
    target = ATTRIBUTES.get(name)
    return f"did you mean '{target}'?" if target is not None else None


def _missing(a: _Attr, c: _Context, extras: dict[str, str | None]) -> tuple[str, None] | None:
    if not a.nested and any(h and h.rstrip("?").endswith(f"'{a.key}'") for h in extras.values()):
        return None  # `kernal=3` or `kernel_size=3` already explains the missing `kernel`
    return f"{c.what} needs '{a.path}'", None


def _union_tag(a: _Attr, c: _Context) -> tuple[str, str | None]:
    ctx = a.main.get("ctx", {})
    tag = str(ctx.get("tag"))
    known = ", ".join(f"'{w}'" for w in a.choices) or str(ctx.get("expected_tags", ""))
    return f"{c.what}: unknown {a.key} '{tag}'", suggest(tag, a.choices) or f"known: {known}"


def _is_type_error(a: _Attr) -> bool:
    """A value of the wrong type (not a wrong choice word): say what the attribute takes."""
    return (
        a.accepted is not None
        and not isinstance(a.got, dict)
        and (a.main["type"] != "literal_error" or _numeral(str(a.got)))
    )


def _wrong_type(a: _Attr, c: _Context) -> tuple[str, str | None]:
    got, accepted = a.got, a.accepted or ""
    msg, hint = f"{c.what}: {a.path} must be {accepted}, got {dsl(got)}", None
    bad = next((x for x in a.errors if isinstance(x["loc"][-1], int)), None)
    if bad is not None and isinstance(got, list | tuple):  # one item is wrong
        item = bad.get("input")
        hint = f"item {int(bad['loc'][-1]) + 1} is {dsl(item)} ({kind(item)})"
    else:
        msg += f" ({kind(got)})"
    if isinstance(got, str) and _numeral(got) and "a string" not in accepted:
        hint = f"write {got} without quotes: quoted, it is a string"
    elif isinstance(got, float) and got.is_integer() and "an integer" in accepted:
        hint = f"write {int(got)}; to divide, `//` keeps an integer where `/` gives a float"
    return msg, hint


def _other(a: _Attr, c: _Context) -> tuple[str, str | None]:
    """A validator's own message (a rule across fields, a custom check)."""
    text = str(a.main["msg"]).removeprefix("Value error, ")
    got = a.got
    shown = f" (got {dsl(got)})" if got is not None and not isinstance(got, dict) else ""
    hint = suggest(got, a.choices) if isinstance(got, str) and a.choices else None
    where = f"{c.what}: {a.path}" if a.path else c.what  # a rule across fields has no path
    return f"{where}: {text}{shown}", hint


def _numeral(text: str) -> bool:
    return re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*|true|false", text) is not None


def build_model(
    cls: type[BaseModel],
    raw: dict[str, Any],
    spans: dict[str, Span],
    fallback: Span,
    what: str,
    layer: str | None = None,
    strict: bool = False,
) -> Any:
    """Validate evaluated DSL values (bare names still Symbols) into `cls`.

    `strict` holds literals to their types, as op attributes need: `true` is not 1 unit, nor
    `"3"` 3 (an int still fills a float). Strict only here, on values the DSL wrote: IR JSON is
    read leniently, as its lists stand for tuples.
    """
    values = {k: plain(v, tuples=strict) for k, v in raw.items()}
    try:
        # The context reaches nested validators (bidirectional's inner layer) as strict too.
        return cls.model_validate(values, strict=strict, context={"strict": strict})
    except ValidationError as err:
        known = [k for k in cls.model_fields if k not in ("op", "name", "network")]
        context = _Context(what, spans, fallback, known, layer, values, raw, cls)
        raise validation_error(err, context) from None
