"""What a checkpoint's meta record may hold, checked before a resume or a plot uses it: a
corrupted field is named (exit 3), never an internal error later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netspec.arrays import decode_json
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ops.base import Array

# History fields that are text, not numbers: which engine and device ran the epoch.
TEXT_FIELDS = frozenset({"engine", "device"})


def _number(v: Any, none: bool = False) -> bool:
    return (v is None and none) or (isinstance(v, int | float) and not isinstance(v, bool))


def _field_ok(key: str, value: Any) -> bool:
    return isinstance(value, str) if key in TEXT_FIELDS else _number(value, none=True)


def history_problem(history: list[Any]) -> str | None:
    """What is wrong with the meta record's history (resume continues it, plot draws it)."""
    for i, record in enumerate(history):
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            return f"its history record {i + 1} is not an epoch's record"
        bad = next((k for k, v in record.items() if not _field_ok(k, v)), None)
        if bad is not None:
            return f"its history record {i + 1}'s {str(bad)[:40]!r} is not a number"
    return None


def stopping_problem(state: Any) -> str | None:
    """What is wrong with the early-stopping record a resume continues from."""
    if state is None:
        return None
    if not isinstance(state, dict):
        return "its early_stopping record is not a record"
    checks = {
        "best": _number(state.get("best"), none=True),
        "best_epoch": state.get("best_epoch") is None or isinstance(state["best_epoch"], int),
        "wait": isinstance(state.get("wait"), int) and state["wait"] >= 0,
        "monitor": isinstance(state.get("monitor", ""), str),
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"its early_stopping field '{bad[0]}' is missing or invalid" if bad else None


def check_optimizer(state: dict[str, Array], params: dict[str, Array], path: Path) -> None:
    """A step counter, and every moment shaped like the parameter it belongs to."""
    if "step" not in state or state["step"].size != 1:
        raise NetspecError.at(
            f"{path} is not a netspec checkpoint: it has no optimizer step counter",
            exit_code=EXIT_RUNTIME,
        )
    for key, value in state.items():
        _, _, name = key.partition(".")
        numeric = value.dtype.kind in ("f", "i", "u") if key == "step" else value.dtype.kind == "f"
        if not numeric:
            raise NetspecError.at(
                f"{path}: optimizer state '{key}' has dtype {value.dtype}; it must be "
                + ("a number" if key == "step" else "floats"),
                exit_code=EXIT_RUNTIME,
            )
        if name and (name not in params or params[name].shape != value.shape):
            raise NetspecError.at(
                f"{path}: optimizer state '{key}' does not match a parameter of the checkpoint",
                exit_code=EXIT_RUNTIME,
            )


def parse_meta(array: Array, path: Path) -> dict[str, Any]:
    """The checkpoint's JSON record, with the fields a resume reads checked."""
    try:
        meta = decode_json(array)
    except (UnicodeDecodeError, ValueError) as e:
        raise NetspecError.at(
            f"{path} is not a netspec checkpoint: its meta record is not JSON ({e})",
            exit_code=EXIT_RUNTIME,
        ) from None
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("epoch"), int)
        and meta["epoch"] >= 0
        and isinstance(meta.get("rng"), dict)
        and isinstance(meta.get("history", []), list)
    )
    if ok:
        try:  # the loop's bit-generator state, as resume will restore it
            np.random.default_rng().bit_generator.state = meta["rng"]
        except (KeyError, TypeError, ValueError):
            ok = False
    if not ok:
        raise NetspecError.at(
            f"{path} is not a netspec checkpoint: its meta record lacks a valid epoch, "
            "rng state or history",
            exit_code=EXIT_RUNTIME,
        )
    problem = history_problem(meta.get("history", [])) or stopping_problem(
        meta.get("early_stopping")
    )
    if problem:
        raise NetspecError.at(
            f"{path} is not a valid netspec checkpoint: {problem}", exit_code=EXIT_RUNTIME
        )
    return meta  # type: ignore[no-any-return]
