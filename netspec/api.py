"""The pipeline as straight-line functions, for the CLI and for embedding netspec in programs.

from netspec import api
net = api.load("specs/lenet5.net")
analysis = api.check(net)          # raises NetspecError listing every problem
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from netspec.errors import Diagnostic, NetspecError
from netspec.expand import expand, load_program
from netspec.graph import analyse, require
from netspec.ir import Analysis, Network


def load(
    path: str | Path,
    network: str | None = None,
    *,
    text: str | None = None,
    allow_outside_imports: bool = False,
) -> Network:
    """A `.net` spec (expanded) or an IR `.json` (as written by `compile`) -> Network."""
    path = Path(path)
    if path.suffix == ".json":
        return _load_json(path, text)
    if text is None and not path.exists():
        raise NetspecError.at(f"no such file: {path}", exit_code=1)
    program = load_program(path, text, allow_outside=allow_outside_imports)
    return expand(program, network)


def _load_json(path: Path, text: str | None) -> Network:
    try:
        raw = text if text is not None else path.read_text(encoding="utf-8")
        data: Any = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NetspecError.at(f"cannot read IR JSON {path}: {e}") from None
    if isinstance(data, dict) and "network" in data and "layers" in data:
        data = data["network"]  # a compiled analysis: the IR is inside
    try:
        return Network.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise NetspecError.at(
            f"{path} is not a valid netspec IR: {where}: {first['msg']} "
            f"({e.error_count()} problem(s))"
        ) from None


def analyse_network(net: Network) -> tuple[Analysis, list[Diagnostic]]:
    """Shapes and counts plus every diagnostic, without raising (for partial tables)."""
    return analyse(net)


def check(net: Network) -> Analysis:
    """The analysed network; raises NetspecError with every error found."""
    analysis, diags = analyse(net)
    return require(analysis, diags)


def compile_json(analysis: Analysis) -> str:
    """The IR with inferred shapes, as JSON that `load` reads back."""
    return analysis.model_dump_json(indent=1)


def schema() -> dict[str, Any]:
    """The IR's JSON Schema."""
    return Network.model_json_schema()
