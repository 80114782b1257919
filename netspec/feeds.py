"""Model inputs checked against the model's signature before anything runs.

One validator for both back ends: `runtime.run_onnx` (signature read from the onnxruntime
session) and the NumPy engine behind `api.predict` (signature read from the analysed IR), so a
bad input gets the same message whichever runs it. Pure NumPy, beside neither back end:
importing it loads neither onnx nor onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.ops.base import Array
from netspec.ops.embedding import check_ids


@dataclass(frozen=True)
class InputSignature:
    """What one model input accepts: its dtype, its shape with the batch axis first (None: any
    size), and, for ids that index an embedding table, the table's number of rows."""

    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int | None, ...]
    vocab: int | None = None


def validate(signature: Sequence[InputSignature], inputs: Mapping[str, Array]) -> dict[str, Array]:
    """Inputs by name, cast within their kind (float64 -> float32); names, kinds, shapes, the
    batch size (shared, at least one row) and embedding id ranges checked."""
    expected = {s.name: s for s in signature}
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing or extra:
        raise NetspecError.at(
            f"the model takes inputs {list(expected)}; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unknown {extra}" if extra else ""),
            hint=f"pass --input NAME=FILE.npy, or an .npz whose arrays are named {list(expected)}",
            exit_code=EXIT_USAGE,
        )
    out: dict[str, Array] = {}
    for name, sig in expected.items():
        arr = np.asarray(inputs[name])
        want_kind = sig.dtype.kind
        # Only a cast within a kind: bool, complex and text are refused, never reinterpreted.
        if not (arr.dtype.kind == want_kind or (want_kind == "i" and arr.dtype.kind == "u")):
            raise NetspecError.at(
                f"input '{name}' must be {sig.dtype.name}, got {arr.dtype.name}",
                hint="token ids are integers; images and features are floats"
                if want_kind in "iu"
                else "convert (and normalise) the data to floats first",
                exit_code=EXIT_RUNTIME,
            )
        fits = arr.ndim == len(sig.shape) and all(
            w is None or w == g for w, g in zip(sig.shape[1:], arr.shape[1:], strict=True)
        )
        if not fits:
            shown = ["N" if w is None else w for w in sig.shape]
            raise NetspecError.at(
                f"input '{name}' must have shape {shown} (N = batch), got {list(arr.shape)}",
                hint="the first axis is the batch; a single example needs a batch axis of 1",
                exit_code=EXIT_RUNTIME,
            )
        if sig.vocab is not None:
            check_ids(arr, sig.vocab)
        out[name] = arr.astype(sig.dtype, copy=False)
    sizes = sorted({a.shape[0] for a in out.values()})
    if len(sizes) > 1:
        raise NetspecError.at(
            f"inputs disagree on the batch size: {sizes}",
            hint="give every input the same number of rows",
            exit_code=EXIT_RUNTIME,
        )
    if sizes == [0]:
        raise NetspecError.at(
            "the input has no rows", hint="give at least one example", exit_code=EXIT_RUNTIME
        )
    return out
