"""`netspec export` and `netspec predict` from the command line: results, messages, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from netspec import api, cli
from netspec.arrays import save_arrays
from netspec.errors import EXIT_RUNTIME, EXIT_USAGE
from netspec.initializers import init_params
from tests.subprocess_cli import netspec

ROOT = Path(__file__).resolve().parents[2]

SPEC = """
network Tiny {
  input x: [2, 6, 6]
  conv2d(3, 3) batchnorm relu
  flatten
  dropout(0.2)
  fc = dense(4)
}
train Tiny { loss = cross_entropy }
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A spec, trained-looking weights, a good and a badly shaped input."""
    spec = tmp_path / "tiny.net"
    spec.write_text(SPEC, encoding="utf-8")
    analysis = api.check(api.load(spec))
    weights = tmp_path / "run" / "weights.npz"
    weights.parent.mkdir()
    save_arrays(weights, init_params(analysis, np.random.default_rng(3)))
    rng = np.random.default_rng(4)
    good, bad = tmp_path / "x.npy", tmp_path / "bad.npy"
    np.save(good, rng.normal(size=(5, 2, 6, 6)).astype(np.float32))
    np.save(bad, rng.normal(size=(5, 6, 6)).astype(np.float32))
    return {"spec": spec, "weights": weights, "x": good, "bad": bad}


def test_export_then_predict_agrees_with_the_numpy_engine_on_the_same_weights(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["export", str(files["spec"]), "--weights", str(files["weights"].parent)]) == 0
    model = files["weights"].parent / "Tiny.onnx"  # default: beside the weights
    assert "wrote" in capsys.readouterr().out
    onnx_out, numpy_out = tmp_path / "o1.npy", tmp_path / "o2.npy"
    argv = ["predict", str(model), "--input", str(files["x"]), "--provider", "cpu"]
    assert cli.main([*argv, "--top", "2", "-o", str(onnx_out)]) == 0
    shown = capsys.readouterr().out
    assert "provider: CPUExecutionProvider" in shown
    assert "output fc.probs: shape [5, 4]" in shown
    argv = ["predict", str(files["spec"]), "--weights", str(files["weights"])]
    assert cli.main([*argv, "--input", f"x={files['x']}", "-o", str(numpy_out)]) == 0
    assert "provider: numpy" in capsys.readouterr().out
    probs = np.load(onnx_out)
    np.testing.assert_allclose(probs, np.load(numpy_out), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_export_without_weights_writes_network_onnx_in_the_current_folder(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["export", str(files["spec"]), "--opset", "13", "--batch", "3", "--logits"]
    assert cli.main(argv) == 0
    sess = ort.InferenceSession(str(tmp_path / "Tiny.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [3, 2, 6, 6]
    assert [o.name for o in sess.get_outputs()] == ["fc"]


def test_a_bad_batch_or_opset_is_a_usage_error(files: dict[str, Path]) -> None:
    assert cli.main(["export", str(files["spec"]), "--batch", "zero"]) == EXIT_USAGE
    assert cli.main(["export", str(files["spec"]), "--opset", "7", "-o", "/dev/null"]) == EXIT_USAGE


def test_weights_that_do_not_fit_name_the_tensor_and_both_shapes(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.npz"
    arrays = dict(np.load(files["weights"]))
    arrays["fc.weight"] = np.zeros((4, 7), np.float32)
    save_arrays(wrong, arrays)
    argv = ["export", str(files["spec"]), "--weights", str(wrong), "-o", str(tmp_path / "m.onnx")]
    assert cli.main(argv) == EXIT_RUNTIME
    err = capsys.readouterr().err
    assert "'fc.weight'" in err and "[4, 7]" in err and "[4, 48]" in err


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="a GPU provider is present"
)
def test_predict_on_cuda_without_the_cuda_provider_fails_clearly(
    files: dict[str, Path], tmp_path: Path
) -> None:
    model = tmp_path / "m.onnx"
    assert netspec("export", files["spec"], "-o", model).returncode == 0
    r = netspec("predict", model, "--input", files["x"], "--provider", "cuda")
    assert r.returncode == EXIT_RUNTIME
    assert "the CUDA execution provider is not available: install onnxruntime-gpu" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("corrupt", "is not a readable ONNX model"),
        ("missing", "no such ONNX model"),
        ("shape", "input 'x' must have shape ['N', 2, 6, 6] (N = batch), got [5, 6, 6]"),
        ("weights", "is not a readable .npz archive"),
    ],
)
def test_bad_models_inputs_and_weights_give_clean_errors(
    files: dict[str, Path], tmp_path: Path, case: str, message: str
) -> None:
    model = tmp_path / "m.onnx"
    if case == "corrupt":
        model.write_bytes(b"\x08\x07not an onnx model at all")
        r = netspec("predict", model, "--input", files["x"])
    elif case == "missing":
        r = netspec("predict", tmp_path / "nothing.onnx", "--input", files["x"])
    elif case == "shape":
        assert cli.main(["export", str(files["spec"]), "-o", str(model)]) == 0
        r = netspec("predict", model, "--input", files["bad"])
    else:
        broken = tmp_path / "broken.npz"
        broken.write_bytes(b"PK\x03\x04 truncated")
        r = netspec("predict", files["spec"], "--weights", broken, "--input", files["x"])
    assert r.returncode == EXIT_RUNTIME, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_predict_needs_an_input(files: dict[str, Path], tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    assert cli.main(["export", str(files["spec"]), "-o", str(model)]) == 0
    assert cli.main(["predict", str(model)]) == EXIT_USAGE


def test_predict_shows_the_class_labels_the_spec_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "labelled.net"
    spec.write_text(
        "network L { input x: [3]\n dense(2) }\n"
        'train L { loss = cross_entropy  labels = ["cat", "dog"] }\n'
    )
    model = tmp_path / "l.onnx"
    assert cli.main(["export", str(spec), "-o", str(model)]) == 0
    np.save(tmp_path / "x.npy", np.ones((1, 3), np.float32))
    assert cli.main(["predict", str(model), "--input", str(tmp_path / "x.npy"), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "cat:" in out and "dog:" in out


def test_predict_reads_and_checks_an_onnx_model_once_and_rereads_a_changed_one(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from netspec.onnx import runtime

    reads: list[Path] = []
    read = runtime._read_checked
    monkeypatch.setattr(runtime, "_read_checked", lambda p: reads.append(p) or read(p))
    model = files["weights"].parent / "Tiny.onnx"
    assert cli.main(["export", str(files["spec"]), "--weights", str(files["weights"])]) == 0
    argv = ["predict", str(model), "--input", str(files["x"]), "--provider", "cpu"]
    assert cli.main(argv) == 0  # inputs, metadata, memory estimate and session: one read
    assert reads == [model]
    assert cli.main(["export", str(files["spec"]), "-o", str(model), "--logits"]) == 0
    assert cli.main(argv) == 0  # another model under the same name is read again
    assert reads == [model, model]
    assert "fc.probs" not in capsys.readouterr().out.split("provider:")[-1]
