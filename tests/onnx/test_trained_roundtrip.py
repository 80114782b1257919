"""A trained model predicts the same through onnxruntime as through `netspec eval`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netspec import api
from netspec.arrays import load_arrays
from netspec.onnx.runtime import run_onnx
from netspec.runs import NORMALIZATION
from netspec.training.data import load_data, split
from netspec.training.plan import streams as _streams

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def test_trained_digits_cnn_gives_eval_s_predictions_in_onnxruntime(tmp_path: Path) -> None:
    analysis = api.check(api.load(EXAMPLES / "digits_cnn.net"))
    spec = analysis.network.train
    assert spec is not None and spec.data is not None
    run = tmp_path / "run"
    api.train(analysis, run, epochs=2)
    weights = load_arrays(run / "weights.npz")
    stats = load_arrays(run / NORMALIZATION)
    api.export(
        analysis, tmp_path / "cnn.onnx", weights, normalization=(stats["shift"], stats["scale"])
    )

    evaluation = api.evaluate(analysis, run / "weights.npz")
    # The validation split eval scores: the run's own seeded split of the raw data.
    data = load_data(spec.data, (1, 8, 8), "float32")
    _, val = split(data, spec.validation, _streams(spec.seed)[1])
    assert evaluation.samples == len(val)

    outputs, provider = run_onnx(tmp_path / "cnn.onnx", {"image": val.x}, "cpu", 256)
    assert provider == "CPUExecutionProvider"
    (probs,) = outputs.values()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    onnx_accuracy = float(np.mean(probs.argmax(axis=1) == val.y))
    assert onnx_accuracy == evaluation.metrics["accuracy"]

    numpy_out, _ = api.predict(
        EXAMPLES / "digits_cnn.net",
        {"image": val.x},
        params=weights,
        normalization=(stats["shift"], stats["scale"]),
    )
    (numpy_probs,) = numpy_out.values()
    np.testing.assert_array_equal(numpy_probs.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(numpy_probs, probs, rtol=1e-4, atol=1e-6)
