"""The torch engine's speed options: `--precision bf16|fp16` (autocast; fp16 with a gradient
scaler) trains and refuses what cannot work, fp32 is the unchanged arithmetic, `--compile`
trains as the eager module does (or says clearly why it cannot), and the training features are
held on the device once (DeviceData), which the CPU path shares with a GPU's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netspec import api
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.torch.speed import DeviceData, fits, resident
from netspec.torch.trainer import fit as torch_fit
from tests.torch.test_trainer import MLP, assert_same, spec

RECIPE = """  loss = cross_entropy
  optimizer = adam(lr=0.01)
  batch = 8
  epochs = 12
  seed = 3"""


def run(tmp_path: Path, name: str, **options: object) -> list[dict[str, object]]:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    result = torch_fit(a, a.network.train, tmp_path / name, device="cpu", **options)  # type: ignore[arg-type]
    return result.history


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_16_bit_run_on_the_cpu_trains_a_small_mlp(tmp_path: Path, precision: str) -> None:
    history = run(tmp_path, precision, precision=precision)
    losses = [float(r["loss"]) for r in history]  # type: ignore[arg-type]
    assert losses[-1] < 0.9 * losses[0], losses
    assert history[0]["device"] == f"cpu, {precision} autocast"


def test_fp32_is_the_unchanged_arithmetic(tmp_path: Path) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    train = a.network.train
    assert train is not None
    plain = torch_fit(a, train, tmp_path / "plain", device="cpu", epochs=2)
    fp32 = torch_fit(a, train, tmp_path / "fp32", device="cpu", epochs=2, precision="fp32")
    assert_same(fp32.params, plain.params, tol=0)
    assert fp32.history[0]["device"] == "cpu"


def test_what_cannot_work_is_refused_before_the_run(tmp_path: Path) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    train = a.network.train
    assert train is not None
    with pytest.raises(NetspecError, match="computes in 16 bits"):
        torch_fit(a, train, tmp_path / "r", device="cpu", dtype=np.float64, precision="bf16")
    with pytest.raises(NetspecError, match="unknown precision 'fp8'"):
        torch_fit(a, train, tmp_path / "r", device="cpu", precision="fp8")
    assert not (tmp_path / "r").exists()
    net = str(tmp_path / "t.net")
    for flags in (["--precision", "bf16"], ["--compile"]):
        assert main(["train", net, *flags, "--out", str(tmp_path / "n")]) == 2  # NumPy engine
    assert not (tmp_path / "n").exists()


@pytest.mark.slow
def test_a_compiled_network_trains_as_the_eager_one(tmp_path: Path) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    train = a.network.train
    assert train is not None
    eager = torch_fit(a, train, tmp_path / "eager", device="cpu", epochs=1)
    torch._dynamo.reset()
    compiled = torch_fit(a, train, tmp_path / "compiled", device="cpu", epochs=1, compile=True)
    assert_same(compiled.params, eager.params, tol=1e-5)


@pytest.mark.slow
def test_a_compile_that_cannot_work_says_so_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._inductor.config

    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    train = a.network.train
    assert train is not None
    torch._dynamo.reset()
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/c++",))
    with pytest.raises(NetspecError, match=r"--compile: torch\.compile could not compile") as e:
        torch_fit(a, train, tmp_path / "r", device="cpu", epochs=1, compile=True)
    assert "drop --compile" in (e.value.diagnostics[0].hint or "")
    torch._dynamo.reset()


def test_the_features_are_held_on_the_device_once_and_indexed_per_batch() -> None:
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    held = resident(x, torch.device("cpu"), torch.float32)
    assert isinstance(held, DeviceData) and len(held) == 10 and held.shape == (10, 3)
    assert np.shares_memory(held.tensor.numpy(), x)  # float32 on the CPU: not even one copy
    index = np.array([7, 2, 5])
    np.testing.assert_array_equal(held[index].numpy(), x[index])
    as64 = resident(x, torch.device("cpu"), torch.float64)
    assert as64.tensor.dtype == torch.float64  # converted once, not per batch
    ids = resident(np.arange(6).reshape(3, 2), torch.device("cpu"), torch.float32)
    assert ids.tensor.dtype == torch.int64
    named = {"a": x}
    assert resident(named, torch.device("cpu"), torch.float32) is named
    # on a GPU, a data set stays only where half the free memory holds it
    assert fits(100, 200) and not fits(101, 200)


def test_a_torch_run_reports_its_device_first_and_in_the_history(tmp_path: Path) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    result = api.train(a, tmp_path / "r", engine="torch", device="cpu", epochs=1, curves=False)
    assert all(r["device"] == "cpu" and r["engine"] == "torch" for r in result.history)
