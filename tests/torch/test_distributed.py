"""`--nproc N` and torchrun: each rank trains on its shard of every global batch and ends on the
one-process run's weights (no batch norm), every rank holds the same weights (batch norm on its
own shard, or synchronised as on CUDA), a worker that fails is named and leaves no half-written
file, and a batch that the processes cannot share is refused before start.

Each launch spawns two Python processes that import torch: a few seconds each on an idle
machine, so the launches here are few and the networks tiny."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from netspec import api
from netspec.arrays import load_arrays
from netspec.errors import NetspecError
from netspec.ir import Analysis
from netspec.ops.base import Params
from netspec.runs import load_checkpoint
from netspec.torch.distributed import FAIL_ENV, WEIGHTS_ENV
from netspec.torch.losses import TORCH_LOSSES
from netspec.torch.run import fit
from tests.torch.test_trainer import BATCHNORM_BLOCK, MLP, assert_same, spec, torch_run

# 27 training samples after the split: batches of 8, 8, 8 and 3, the last split 2 + 1.
RECIPE = """  loss = cross_entropy
  optimizer = adam(lr=0.01)
  schedule = cosine(warmup=1)
  batch = 8
  epochs = 3
  validation = 0.16
  metrics = [accuracy]
  l2 = 0.001
  clip_norm = 1.0
  seed = 3"""


class Spy:
    """The progress calls the parent receives from rank 0."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def run_start(self, engine: str, device: str) -> None:
        self.calls.append(("run_start", device))

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None:
        self.calls.append(("epoch_start", samples))

    def batch_end(self, samples_done: int, running_loss: float) -> None:
        self.calls.append(("batch_end", samples_done))

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.calls.append(("epoch_end", record["epoch"]))


def two(a: Analysis, out: Path, **options: Any) -> Params:
    train = a.network.train
    return fit(a, train, out, device="cpu", dtype=np.float64, nproc=2, **options).params


def test_two_processes_end_on_the_weights_of_one_process_on_the_same_global_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(ranks))
    spy = Spy()
    got = two(a, tmp_path / "two", progress=spy)
    one = torch_run(a, tmp_path / "one")
    assert_same(got, one)
    assert_same(load_arrays(ranks / "rank1.npz"), one)
    # only rank 0 wrote the run's files, and its progress reached the parent
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "checkpoint.npz",
        "history.json",
        "weights.npz",
    ]
    assert spy.calls[0] == ("run_start", "cpu, 2 processes (gloo)")
    assert [c for c in spy.calls if c[0] == "epoch_end"] == [("epoch_end", e) for e in (1, 2, 3)]
    assert ("batch_end", 27) in spy.calls  # the global batches' samples, not a shard's
    history = (tmp_path / "two" / "history.json").read_text(encoding="utf-8")
    assert '"device": "cpu, 2 processes (gloo)"' in history


def test_with_batch_norm_on_each_shard_both_ranks_hold_identical_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = spec(tmp_path, BATCHNORM_BLOCK, RECIPE, (2, 6, 6), 3)
    ranks = tmp_path / "ranks"
    ranks.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(ranks))
    got = two(a, tmp_path / "two")
    assert_same(load_arrays(ranks / "rank1.npz"), got, tol=0)
    assert_same(load_arrays(ranks / "rank0.npz"), got, tol=0)
    # each shard's own statistics: not the one-process run's (which the synchronised
    # batch norm below reproduces)
    one = torch_run(a, tmp_path / "one")
    assert not np.allclose(got["bn1.running_mean"], one["bn1.running_mean"], atol=1e-6)


def test_synchronised_batch_norm_as_on_cuda_ends_on_the_one_process_runs_weights(
    tmp_path: Path,
) -> None:
    a = spec(tmp_path, BATCHNORM_BLOCK, RECIPE, (2, 6, 6), 3)
    got = two(a, tmp_path / "two", sync_batchnorm=True)
    assert_same(got, torch_run(a, tmp_path / "one"))


@pytest.mark.parametrize(
    ("hook", "message"),
    [("1:5", "worker rank 1 of 2 failed: RuntimeError: injected failure"), ("1:5:exit", "died")],
    ids=["raises", "dies"],
)
def test_a_worker_that_fails_stops_the_others_names_its_rank_and_leaves_whole_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: str, message: str
) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    monkeypatch.setattr("netspec.training.loop.CHECKPOINT_INTERVAL_S", 0.0)  # every epoch saves
    monkeypatch.setenv(FAIL_ENV, hook)  # step 5: in the second epoch, after the first save
    out = tmp_path / "two"
    with pytest.raises(NetspecError, match=message) as e:
        two(a, out)
    assert "worker rank 1 of 2" in str(e.value)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "history.json"]
    assert load_checkpoint(out / "checkpoint.npz").meta["epoch"] == 1


def test_a_global_batch_the_processes_cannot_share_is_refused_with_the_sizes_that_work(
    tmp_path: Path,
) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    with pytest.raises(NetspecError) as e:
        api.train(a, tmp_path / "run", engine="torch", device="cpu", nproc=3, curves=False)
    assert "does not split into 3 equal shards (--nproc 3)" in str(e.value)
    assert e.value.diagnostics[0].hint is not None
    assert "batch = 6 or 9" in e.value.diagnostics[0].hint
    assert not (tmp_path / "run").exists()
    with pytest.raises(NetspecError, match="one process"):
        api.train(a, tmp_path / "run", engine="numpy", nproc=2, curves=False)


def test_under_a_launchers_environment_netspec_joins_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = spec(tmp_path, MLP, RECIPE, (4,), 3)
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for k, v in {**env, "MASTER_PORT": "29533"}.items():
        monkeypatch.setenv(k, v)
    result = api.train(a, tmp_path / "run", engine="torch", device="cpu", curves=False)
    assert result.history[-1]["device"] == "cpu, 1 process (gloo)"
    assert not torch.distributed.is_initialized()  # left as found
    with pytest.raises(NetspecError, match="torchrun started the processes"):
        api.train(a, tmp_path / "r2", engine="torch", device="cpu", nproc=2, curves=False)
    with pytest.raises(NetspecError, match="one process"):
        api.train(a, tmp_path / "r3", engine="numpy", curves=False)


@pytest.mark.parametrize("loss", sorted(TORCH_LOSSES))
def test_averaging_the_scaled_shard_gradients_gives_the_global_mean_loss_gradient(
    loss: str,
) -> None:
    # What DDP computes: the mean over ranks of grad(shard mean loss * n_r * world / n).
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.normal(size=(7, 3)), requires_grad=True)
    if loss in ("cross_entropy", "hinge"):
        t = torch.tensor(rng.integers(0, 3, size=7))
    else:
        t = torch.tensor(rng.integers(0, 2, size=(7, 3)).astype(np.float64))
    fn = TORCH_LOSSES[loss]
    (whole,) = torch.autograd.grad(fn(y, t), y)
    world, bounds = 3, [0, 3, 5, 7]  # shards of 3, 2, 2
    shards = torch.zeros_like(y)
    for lo, hi in itertools.pairwise(bounds):
        scaled = fn(y[lo:hi], t[lo:hi]) * ((hi - lo) * world / 7)
        (g,) = torch.autograd.grad(scaled, y)
        shards += g / world
    torch.testing.assert_close(shards, whole, rtol=0, atol=1e-12)
