"""`predict` checks its inputs, weights and statistics the same way on both back ends: the NumPy
engine (a .net with --weights) and onnxruntime (an exported .onnx)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netspec import api, cli
from netspec.arrays import save_arrays
from netspec.errors import EXIT_RUNTIME, EXIT_USAGE
from netspec.initializers import init_params

SPEC = """
network Pair {
  input image: [3]
  input extra: [3]
  s = add(image, extra)
  fc = dense(2)
}
train Pair { loss = mse }
"""

PLAIN = """
network Plain { input x: [3]
  fc = dense(2) }
train Plain { data = "d.npz"  loss = mse }
"""

NORMALISED = """
network Plain { input x: [3]
  fc = dense(2) }
train Plain { data = npz("d.npz", normalize=standard)  loss = mse }
"""


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out, err


def weights_for(spec: Path, run_dir: Path) -> Path:
    analysis = api.check(api.load(spec))
    run_dir.mkdir(exist_ok=True)
    save_arrays(run_dir / "weights.npz", init_params(analysis, np.random.default_rng(0)))
    return run_dir / "weights.npz"


@pytest.fixture
def pair(tmp_path: Path) -> dict[str, Path]:
    """A two-input spec (NumPy engine) and its exported .onnx, with weights."""
    spec = tmp_path / "pair.net"
    spec.write_text(SPEC, encoding="utf-8")
    weights = weights_for(spec, tmp_path / "run")
    model = tmp_path / "pair.onnx"
    assert cli.main(["export", str(spec), "--weights", str(weights), "-o", str(model)]) == 0
    return {"spec": spec, "weights": weights, "onnx": model}


def save(tmp_path: Path, name: str, value: object) -> Path:
    path = tmp_path / name
    if name.endswith(".npz"):
        np.savez(path, **value)  # type: ignore[arg-type]
    else:
        np.save(path, value)
    return path


GOOD = np.ones((4, 3), np.float32)


@pytest.mark.parametrize(
    ("arrays", "code", "message"),
    [
        (
            {"image": np.ones((4, 5), np.float32), "extra": GOOD},
            EXIT_RUNTIME,
            "input 'image' must have shape ['N', 3] (N = batch), got [4, 5]",
        ),
        (
            {"image": np.float32(1), "extra": GOOD},
            EXIT_RUNTIME,
            "input 'image' must have shape ['N', 3] (N = batch), got []",
        ),
        (
            {"image": np.ones((0, 3), np.float32), "extra": np.ones((0, 3), np.float32)},
            EXIT_RUNTIME,
            "the input has no rows",
        ),
        (
            {"image": np.full((4, 3), "a"), "extra": GOOD},
            EXIT_RUNTIME,
            "input 'image' must be float32, got str32",
        ),
        (
            {"image": GOOD > 0, "extra": GOOD},
            EXIT_RUNTIME,
            "input 'image' must be float32, got bool",
        ),
        (
            {"image": GOOD + 1j, "extra": GOOD},
            EXIT_RUNTIME,
            "input 'image' must be float32, got complex64",
        ),
        (
            {"image": np.ones((5, 3), np.float32), "extra": np.ones((3, 3), np.float32)},
            EXIT_RUNTIME,
            "inputs disagree on the batch size: [3, 5]",
        ),
        (
            {"picture": GOOD, "extra": GOOD},
            EXIT_USAGE,
            "the model takes inputs ['image', 'extra']; missing ['image']",
        ),
        ({}, EXIT_USAGE, "missing ['image', 'extra']"),
    ],
    ids=["shape", "scalar", "no-rows", "text", "bool", "complex", "batches", "names", "empty-npz"],
)
@pytest.mark.parametrize("engine", ["numpy", "onnx"])
def test_bad_inputs_get_the_same_message_from_both_engines(
    pair: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    engine: str,
    arrays: dict[str, object],
    code: int,
    message: str,
) -> None:
    if code == EXIT_USAGE:  # names that do not match: an .npz, as users name arrays
        given = ["--input", str(save(tmp_path, "in.npz", arrays))]
    else:  # one .npy per input (an .npz refuses text arrays itself)
        given = [f"--input={k}={save(tmp_path, f'{k}.npy', v)}" for k, v in arrays.items()]
    model = ["--weights", pair["weights"]] if engine == "numpy" else []
    target = pair["spec"] if engine == "numpy" else pair["onnx"]
    got, _, err = run(capsys, "predict", target, *model, *given)
    assert got == code and message in err, err
    assert "ComplexWarning" not in err


def test_the_numpy_engine_casts_float64_inputs_like_onnxruntime(
    pair: dict[str, Path], tmp_path: Path
) -> None:
    x = np.random.default_rng(1).normal(size=(4, 3))
    inputs = {"image": x, "extra": x}
    numpy_out, _ = api.predict(pair["spec"], inputs, params=dict(np.load(pair["weights"])))
    onnx_out, _ = api.predict(pair["onnx"], inputs, provider="cpu")
    np.testing.assert_allclose(numpy_out["fc"], onnx_out["fc"], rtol=1e-5, atol=1e-6)
    assert numpy_out["fc"].dtype == np.float32


def test_negative_or_too_large_token_ids_are_refused_before_onnxruntime_runs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "text.net"
    spec.write_text("network T { input ids: int64[6]\n embedding(10, 4)\n flatten\n dense(2) }")
    model = tmp_path / "t.onnx"
    assert cli.main(["export", str(spec), "-o", str(model)]) == 0
    capfd.readouterr()
    for value, shown in ((-5, "from -5 to -5"), (10, "from 10 to 10")):
        ids = save(tmp_path, "ids.npy", np.full((2, 6), value, np.int64))
        code, _, err = run(capfd, "predict", model, "--input", ids)
        assert code == EXIT_RUNTIME
        # First, and alone: no onnxruntime log line before it (fd-level capture sees one).
        assert err.startswith(f"error: embedding ids must lie in [0, 10), got values {shown}")
    ids = save(tmp_path, "ids.npy", np.arange(12, dtype=np.uint8).reshape(2, 6) % 10)
    assert run(capfd, "predict", model, "--input", ids)[0] == 0


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_normalization_file_is_applied_only_when_the_recipe_normalises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    spec = tmp_path / "plain.net"
    spec.write_text(PLAIN)
    weights = weights_for(spec, tmp_path / "run")
    x = save(tmp_path, "x.npy", np.ones((2, 3), np.float32))
    out = tmp_path / ("out.npy" if command == "predict" else "m.onnx")

    def result() -> tuple[np.ndarray, str]:
        args = ["--input", x] if command == "predict" else []
        code, _, err = run(capsys, command, spec, "--weights", weights, *args, "-o", out)
        assert code == 0, err
        if command == "predict":
            return np.load(out), err
        return api.predict(out, {"x": np.ones((2, 3), np.float32)})[0]["fc"], err

    clean, _ = result()
    # A stale file from a run of another recipe: never applied to this one.
    save_arrays(
        weights.parent / "normalization.npz",
        {"shift": np.full(3, 100.0, np.float32), "scale": np.full(3, 0.01, np.float32)},
    )
    stale, err = result()
    np.testing.assert_array_equal(stale, clean)
    assert "normalises its input" not in err
    # The recipe normalises: the file is applied ...
    spec.write_text(NORMALISED)
    applied, _ = result()
    assert not np.allclose(applied, clean)
    # ... and required.
    (weights.parent / "normalization.npz").unlink()
    args = ["--input", x] if command == "predict" else []
    code, _, err = run(capsys, command, spec, "--weights", weights, *args, "-o", out)
    assert code == EXIT_RUNTIME
    assert "the recipe normalises its data (standard) but" in err and "is missing" in err


def test_one_input_given_twice_is_refused(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "plain.net"
    spec.write_text(PLAIN)
    weights = weights_for(spec, tmp_path / "plainrun")
    a = save(tmp_path, "a.npy", np.ones((2, 3), np.float32))
    b = save(tmp_path, "b.npy", np.zeros((2, 3), np.float32))
    code, _, err = run(capsys, "predict", spec, "--weights", weights, "--input", a, "--input", b)
    assert code == EXIT_USAGE
    assert f"input 'x' is given twice, by --input {a} and --input {b}" in err
    both = save(tmp_path, "both.npz", {"image": GOOD, "extra": GOOD})
    code, _, err = run(capsys, "predict", pair["onnx"], "--input", both, "--input", f"image={a}")
    assert code == EXIT_USAGE and "input 'image' is given twice" in err


def test_weights_given_as_the_model_or_a_checkpoint_as_weights_are_named(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = save(tmp_path, "x.npz", {"image": GOOD, "extra": GOOD})
    code, _, err = run(capsys, "predict", pair["weights"], "--input", x)
    assert code == EXIT_USAGE
    assert "the model must be a .net spec, an IR .json or an .onnx model" in err
    assert "weights go in --weights" in err
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    params = dict(np.load(pair["weights"]))
    save_arrays(checkpoint, {"meta": np.zeros(1)} | {f"params/{k}": v for k, v in params.items()})
    for command in (["predict", pair["spec"], "--input", x], ["export", pair["spec"]]):
        code, _, err = run(capsys, *command, "--weights", checkpoint)
        assert code == EXIT_RUNTIME
        assert f"{checkpoint} is a training checkpoint, not a weights file" in err
        assert "trained for another network" not in err


def test_network_is_honoured_or_refused_for_ir_json_and_onnx_models(
    pair: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ir = tmp_path / "pair.json"
    assert cli.main(["compile", str(pair["spec"]), "-o", str(ir)]) == 0
    x = save(tmp_path, "x.npz", {"image": GOOD, "extra": GOOD})
    weights = ["--weights", pair["weights"], "--input", x]
    assert run(capsys, "predict", ir, "--network", "Pair", *weights)[0] == 0
    code, _, err = run(capsys, "predict", ir, "--network", "Other", *weights)
    assert code == 1 and "no network named 'Other'" in err and "holds network 'Pair'" in err
    assert run(capsys, "check", ir, "--network", "Other")[0] == 1
    code, _, err = run(capsys, "predict", pair["onnx"], "--network", "Pair", "--input", x)
    assert code == EXIT_USAGE and "holds one network: drop --network" in err
