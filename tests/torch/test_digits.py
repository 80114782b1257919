"""Criterion 4 of the torch engine: `netspec train examples/digits_cnn.net --engine torch`
reaches the accuracy the NumPy engine reaches on the same recipe, and its weights export to an
ONNX model that onnxruntime runs as the torch model computes (1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from netspec import api
from netspec.onnx.runtime import run_onnx
from netspec.torch import lower

ROOT = Path(__file__).resolve().parents[2]


def test_the_digits_cnn_on_torch_reaches_the_numpy_accuracy_and_runs_the_same_in_onnx(
    tmp_path: Path,
) -> None:
    a = api.check(api.load(ROOT / "examples" / "digits_cnn.net"))
    numpy_run = api.train(a, tmp_path / "numpy", curves=False)
    torch_run = api.train(a, tmp_path / "torch", engine="torch", device="cpu", curves=False)
    want = numpy_run.history[-1]["val_accuracy"]
    got = torch_run.history[-1]["val_accuracy"]
    assert want > 0.9  # the recipe learns the digits (8 epochs, 288 validation samples)
    assert got >= want - 0.01, (got, want)  # float32 arithmetic apart: within ~3 samples
    # Its weights, with the normalisation built in, as an ONNX model that takes raw inputs.
    assert torch_run.normalization is not None
    onnx = tmp_path / "digits.onnx"
    api.export(a, onnx, torch_run.params, logits=True, normalization=torch_run.normalization)
    with np.load(ROOT / "examples" / "data" / "digits.npz") as z:
        raw = z["x"][:300].reshape(-1, 1, 8, 8).astype(np.float32)
    outs, _ = run_onnx(onnx, {"image": raw}, provider="cpu")
    (ort_logits,) = outs.values()
    shift, scale = torch_run.normalization
    model = lower(a, torch_run.params).eval()
    with torch.no_grad():
        (logits,) = model(torch.from_numpy((raw - shift) / scale))
    np.testing.assert_allclose(ort_logits, logits.numpy(), rtol=0, atol=1e-4)
