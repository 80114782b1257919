"""The torch engine trains a recipe as the NumPy engine does: from the same start and batches,
20 float64 steps end on the same weights (1e-6) for every optimizer and the recipe features,
resumes continue exactly (torch -> torch bit for bit, NumPy -> torch as the uninterrupted
run), and what it writes is read by eval and export."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.cli import main
from netspec.engine.trainer import NumpyTrainer
from netspec.errors import NetspecError
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.ops.base import Params
from netspec.torch.losses import TORCH_LOSSES
from netspec.torch.trainer import fit as torch_fit
from netspec.training.loop import fit as loop_fit

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6

MLP = """
  input x: [4]
  dense(6) tanh
  dense(5) relu
  dense(3)
"""
CNN = """
  input image: [1, 8, 8]
  conv2d(4, kernel=3, padding=1) relu
  maxpool2d(2)
  flatten
  dense(8) relu
  dense(10)
"""
BATCHNORM_BLOCK = """
  input x: [2, 6, 6]
  stem = conv2d(4, 3, padding=1, bias=false)
  bn0 = batchnorm(momentum=0.3)
  act0 = relu
  conv1 = conv2d(4, 3, padding=1, bias=false)
  bn1 = batchnorm
  add(bn1, act0)
  relu
  global_avgpool
  flatten
  dense(3)
"""
LSTM = """
  input x: [5, 3]
  lstm(4, return_sequences=true)
  lstm(3)
  dense(3)
"""
GRU = """
  input x: [5, 3]
  gru(4, return_sequences=true)
  gru(3)
  dense(3)
"""
BILSTM = """
  input x: [5, 3]
  bidirectional(lstm(3))
  dense(3)
"""


def spec(tmp_path: Path, body: str, train: str, shape: tuple[int, ...], classes: int) -> Analysis:
    """A network and its recipe over 32 seeded samples (4 batches of 8: 5 epochs = 20 steps)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(32, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    text = f'network N {{\n{body}\n}}\ntrain N {{\n  data = npz("d.npz")\n{train}\n}}\n'
    path = tmp_path / "t.net"
    path.write_text(text, encoding="utf-8")
    return api.check(api.load(path))


def numpy_run(a: Analysis, out: Path, **options: object) -> Params:
    make = partial(NumpyTrainer, dtype=np.float64)
    return loop_fit(a, a.network.train, out, make, **options).params  # type: ignore[arg-type]


def torch_run(a: Analysis, out: Path, **options: object) -> Params:
    train = a.network.train
    return torch_fit(a, train, out, device="cpu", dtype=np.float64, **options).params  # type: ignore[arg-type]


def assert_same(got: Params, want: Params, tol: float = TOL) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=tol, err_msg=name)


OPTIMIZERS = [
    "bgd(lr=0.1)",
    "sgd(lr=0.1, weight_decay=0.01)",
    "momentum(lr=0.05)",
    "nesterov(lr=0.05)",
    "adagrad(lr=0.05)",
    "rmsprop(lr=0.01)",
    "rmsprop(lr=0.01, momentum=0.9)",
    "rmsprop(lr=0.01, momentum=0.9, nesterov=true)",
    "adam(lr=0.01)",
    "adamw(lr=0.01)",
]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_twenty_mlp_steps_on_torch_equal_the_numpy_engines(tmp_path: Path, optimizer: str) -> None:
    epochs = 20 if optimizer.startswith("bgd") else 5  # bgd: one step per epoch
    train = f"""  loss = cross_entropy
  optimizer = {optimizer}
  schedule = cosine(warmup=1)
  batch = 8
  epochs = {epochs}
  l1 = 0.001
  l2 = 0.001
  clip_norm = 1.0
  seed = 3"""
    a = spec(tmp_path, MLP, train, (4,), 3)
    assert_same(torch_run(a, tmp_path / "t"), numpy_run(a, tmp_path / "n"))


@pytest.mark.parametrize(
    ("body", "shape", "classes", "loss"),
    [
        (CNN, (1, 8, 8), 10, "cross_entropy"),
        (BATCHNORM_BLOCK, (2, 6, 6), 3, "hinge"),
        (LSTM, (5, 3), 3, "cross_entropy"),
        (GRU, (5, 3), 3, "cross_entropy"),
        (BILSTM, (5, 3), 3, "cross_entropy"),
    ],
    ids=["digits_cnn", "batchnorm_block", "lstm", "gru", "bilstm"],
)
def test_twenty_steps_of_each_kind_of_network_equal_the_numpy_engines(
    tmp_path: Path, body: str, shape: tuple[int, ...], classes: int, loss: str
) -> None:
    train = f"""  loss = {loss}
  optimizer = adam(lr=0.01)
  schedule = step(every=2, gamma=0.5, warmup=1)
  batch = 6
  epochs = 5
  validation = 0.25
  metrics = [accuracy]
  seed = 1"""
    a = spec(tmp_path, body, train, shape, classes)
    # 24 training samples after the split: 4 batches of 6 an epoch, 20 steps; running statistics
    # (batchnorm) are compared too
    assert_same(torch_run(a, tmp_path / "t"), numpy_run(a, tmp_path / "n"))


def test_the_digits_cnn_example_takes_twenty_steps_like_the_numpy_engine(tmp_path: Path) -> None:
    with np.load(ROOT / "examples" / "data" / "digits.npz") as z:
        x, y = z["x"][:160], z["y"][:160]
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    text = (ROOT / "examples" / "digits_cnn.net").read_text(encoding="utf-8")
    text = text.replace('"data/digits.npz"', '"digits.npz"').replace("validation = 0.2", "")
    (tmp_path / "cnn.net").write_text(text, encoding="utf-8")
    a = api.check(api.load(tmp_path / "cnn.net"))
    # 160 samples, batch 32: 5 steps an epoch, 4 epochs
    got = torch_run(a, tmp_path / "t", epochs=4)
    assert_same(got, numpy_run(a, tmp_path / "n", epochs=4))


# A schedule that does not depend on the number of epochs: the first half runs with epochs = 2.
RESUMED = """  loss = cross_entropy
  optimizer = adam(lr=0.01)
  schedule = step(every=1, gamma=0.7, warmup=1)
  batch = 8
  epochs = 4
  seed = 5"""


def test_a_resumed_torch_run_ends_bit_for_bit_on_the_uninterrupted_runs_weights(
    tmp_path: Path,
) -> None:
    a = spec(tmp_path, MLP + "  dropout(0.3)\n", RESUMED, (4,), 3)
    whole = torch_run(a, tmp_path / "whole")
    torch_run(a, tmp_path / "part", epochs=2)
    resumed = torch_run(a, tmp_path / "part", resume_from=tmp_path / "part" / "checkpoint.npz")
    assert_same(resumed, whole, tol=0)


def test_a_numpy_run_resumed_on_torch_ends_on_the_uninterrupted_runs_weights(
    tmp_path: Path,
) -> None:
    a = spec(tmp_path, MLP, RESUMED, (4,), 3)
    whole = numpy_run(a, tmp_path / "whole")
    numpy_run(a, tmp_path / "part", epochs=2)
    resumed = torch_run(a, tmp_path / "part", resume_from=tmp_path / "part" / "checkpoint.npz")
    assert_same(resumed, whole)
    # and back: a torch checkpoint resumes on NumPy
    torch_run(a, tmp_path / "back", epochs=2)
    back = numpy_run(a, tmp_path / "back", resume_from=tmp_path / "back" / "checkpoint.npz")
    assert_same(back, whole)


def test_every_loss_has_a_torch_twin() -> None:
    assert sorted(TORCH_LOSSES) == sorted(LOSSES)


def test_cuda_without_a_gpu_is_refused_never_run_on_the_cpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    a = spec(tmp_path, MLP, RESUMED, (4,), 3)
    with pytest.raises(NetspecError, match="--device cuda"):
        api.train(a, tmp_path / "run", engine="torch", device="cuda", curves=False)
    assert not (tmp_path / "run" / "weights.npz").exists()


def test_the_numpy_engine_refuses_a_gpu(tmp_path: Path) -> None:
    a = spec(tmp_path, MLP, RESUMED, (4,), 3)
    with pytest.raises(NetspecError, match="CPU only"):
        api.train(a, tmp_path / "run", engine="numpy", device="cuda", curves=False)


def test_the_digits_cnn_trained_on_torch_is_read_by_eval_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = str(ROOT / "examples" / "digits_cnn.net")
    out = tmp_path / "run"
    args = ["train", net, "--engine", "torch", "--device", "cpu", "--epochs", "1"]
    assert main([*args, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "training on the torch engine, device cpu"
    history = (out / "history.json").read_text(encoding="utf-8")
    assert '"engine": "torch"' in history and '"device": "cpu"' in history
    assert main(["eval", net, "--weights", str(out), "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    onnx = tmp_path / "cnn.onnx"
    assert main(["export", net, "--weights", str(out), "-o", str(onnx)]) == 0
    assert onnx.stat().st_size > 0


def test_engine_torch_without_torch_names_the_pip_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    argv = ["train", "examples/xor.net", "--engine", "torch", "--out", str(tmp_path)]
    code = (
        "import sys; sys.modules['torch'] = None; from netspec.cli import main;"
        f"sys.exit(main({argv!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert "pip install 'netspec[torch]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "weights.npz").exists()
