"""Importing models netspec did not write (issue 17, criterion 2): a torch module exported by
either of `torch.onnx.export`'s exporters imports; its parameter count is torch's; netspec's
re-export of the imported spec with the imported weights and the NumPy engine's forward both
agree with the original ONNX model on onnxruntime within 1e-4."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from netspec import api
from netspec.importer import import_model
from netspec.ir import Analysis
from netspec.onnx.export import to_onnx_model
from tests.onnx.test_export import _numpy, _ort

TOLERANCE = 1e-4


def export_torch(module: Any, x: Any, path: Path, fold: bool = False, dynamo: bool = False) -> None:
    """One of torch.onnx.export's two exporters. In eval mode either folds batch norms into
    the convs before them; `fold=False` keeps them as BatchNormalization nodes (the module
    stays in eval mode either way). The TorchScript one (dynamo=False) keeps them with
    TrainingMode.PRESERVE; the dynamo one with optimize=False, as its optimizer (onnxscript's)
    also fuses batch norms and drops all-zero biases, stored ones too."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation and batch-size notes
        if dynamo:
            torch.onnx.export(
                module.eval(), (x,), str(path), dynamo=True, optimize=fold,
                external_data=False, verbose=False,
            )  # fmt: skip
            return
        mode = torch.onnx.TrainingMode.EVAL if fold else torch.onnx.TrainingMode.PRESERVE
        torch.onnx.export(
            module.eval(), (x,), str(path), dynamo=False, opset_version=17, training=mode
        )


def close(got: np.ndarray, want: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * scale)


def import_torch(
    module: Any, x: Any, tmp: Path, fold: bool = False, dynamo: bool = False
) -> tuple[Analysis, str]:
    """Export (with the exporter `dynamo` picks), import and check `module`; returns the
    imported analysis and the spec text, after every agreement the issue asks for (the
    parameter counts only where the batch norms were kept: folded ones leave a conv bias
    instead of a scale and shift)."""
    path = tmp / "model.onnx"
    export_torch(module, x, path, fold, dynamo)
    imported = import_model(path)
    analysis = api.check(api.load(tmp / "model.net", text=imported.text))
    if not fold:
        torch_params = sum(p.numel() for p in module.parameters())
        torch_state = sum(b.numel() for n, b in module.named_buffers() if "running" in n)
        assert analysis.trainable_params == torch_params, imported.text
        assert analysis.total_params - analysis.trainable_params == torch_state
    model = onnx.load(path)
    (name,) = (v.name for v in model.graph.input)
    feeds = {name: x.numpy()}
    want = _ort(model, feeds)
    (ours,) = (n.name for n in analysis.network.inputs)
    back = to_onnx_model(analysis, imported.weights, logits=True, fold_batchnorm=False)
    close(_ort(back, {ours: feeds[name]}), want)
    with np.errstate(all="ignore"):
        close(_numpy(analysis, imported.weights, {ours: feeds[name]}), want)
    return analysis, imported.text
