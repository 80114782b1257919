"""`api.import_onnx`'s work: the importer's spec and weights, checked by `check_text` (api's load
and check) before either file is written. Part of the api layer (it joins a stage that reads ONNX
with the ones that read `.net` text), kept apart so api.py stays one screenful per function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis


def import_onnx(
    model: str | Path,
    output: str | Path,
    weights_out: str | Path | None,
    check_text: Callable[[str], Analysis],
) -> dict[str, Any]:
    """An ONNX model as a `.net` spec (and its weights as `.npz`), both checked before either
    is written; each file is written atomically, so a failure leaves no partial file.

    Returns the network's name, layer and parameter counts and the import's notes.
    """
    from netspec.arrays import save_arrays
    from netspec.files import atomic_write_text
    from netspec.importer import import_model
    from netspec.runs import check_weights, expected_shapes

    out = Path(output)
    imported = import_model(Path(model))
    try:
        analysis = check_text(imported.text)
        check_weights(imported.weights, expected_shapes(analysis), "the imported weights")
    except NetspecError as e:
        raise NetspecError.at(
            f"the spec imported from {model} does not check (a netspec bug; please report it): "
            f"{e.diagnostics[0].message if e.diagnostics else e}",
            exit_code=EXIT_RUNTIME,
        ) from None
    if weights_out is not None:
        save_arrays(Path(weights_out), imported.weights)
    atomic_write_text(out, imported.text)
    return {
        "network": analysis.network.name,
        "layers": imported.layers,
        "params": analysis.total_params,
        "notes": imported.notes,
    }
