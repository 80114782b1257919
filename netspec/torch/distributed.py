"""Data-parallel training: `--nproc N` on this machine, or a rank of an external torchrun job.

Every rank runs the whole training loop (training.loop) from the same seed, so each draws the
same split, shuffle and batches; the trainer takes the rank's shard of every global batch (the
recipe's `batch` is the global batch) and DistributedDataParallel averages the gradients. A
shard's mean loss is scaled by `n_rank * world / n`, so the average DDP takes is the global
batch's mean-loss gradient even where the last batch splits unevenly. Every rank then applies
the same penalty, clipping and update, and rank 0's running statistics are copied to the
others after each step: every rank holds the same weights, and only rank 0 writes or prints.

Batch norm: on CUDA the statistics are those of the global batch (a synchronised batch norm);
on the CPU each process normalises its own shard, as PyTorch's SyncBatchNorm is CUDA-only.

`--nproc N` starts N processes with torch.multiprocessing (spawn) and a gloo or NCCL process
group on 127.0.0.1; rank 0 relays its progress and result through a queue. A worker that fails
stops the others (torch.multiprocessing terminates them) and is named in the error; the
temporaries of an interrupted atomic write are removed, so no file is left half-written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from netspec.arrays import save_arrays
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis
from netspec.ops.base import Array
from netspec.recipe import TrainSpec
from netspec.torch.lower import NodeModule
from netspec.torch.speed import compiled
from netspec.torch.trainer import TorchTrainer, resolve_device
from netspec.training import loop
from netspec.training.contracts import FitResult, Progress
from netspec.training.loop import fit as run_fit
from netspec.training.plan import Launched

# Test hooks. "RANK:STEP" makes that rank raise at its STEP-th batch, "RANK:STEP:exit" makes it
# die without a word (os._exit), as a killed or crashed worker would; a folder in WEIGHTS_ENV
# receives every rank's final weights as rank<R>.npz (ranks other than 0 write nothing else).
FAIL_ENV = "NETSPEC_TEST_FAIL_RANK"
WEIGHTS_ENV = "NETSPEC_TEST_RANK_WEIGHTS"


@dataclass(frozen=True)
class Job:
    """What every rank needs to run the same training loop (pickled to spawned workers)."""

    analysis: Analysis
    spec: TrainSpec
    out_dir: Path
    trainer: dict[str, Any]  # TorchTrainer's keyword arguments (device, dtype, ...)
    options: dict[str, Any]  # training.loop.fit's (epochs, data, resume_from, ...)
    sync_batchnorm: bool | None = None  # None: on CUDA only
    # The launching process's checkpoint interval, which a spawned worker's fresh import of
    # training.loop would otherwise reset (rank 0 saves on the same schedule as one process).
    checkpoint_interval_s: float = field(default_factory=lambda: loop.CHECKPOINT_INTERVAL_S)


class DistributedTrainer(TorchTrainer):
    """TorchTrainer on one rank's shard of every batch, its module in DistributedDataParallel."""

    def __init__(self, *args: Any, place: Launched, sync_batchnorm: bool, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rank, self.world = place.rank, place.world
        if sync_batchnorm:
            for module in self.model.modules():
                if isinstance(module, NodeModule) and module.op.kind() == "batchnorm":
                    _synchronise(module)
        ids = [self.torch_device] if self.torch_device.type == "cuda" else None
        # Buffers are copied from rank 0 after each step (below), not before each forward.
        self.net = torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=ids, forward_sync_buffers=False
        )
        if self.compile:
            self.net = compiled(self.net)
        self.buffers = list(self.model.buffers())
        plural = "es" if self.world > 1 else ""
        self.device += f", {self.world} process{plural} ({dist.get_backend()})"
        self.steps = 0
        self.fail = _fail_at(os.environ.get(FAIL_ENV), self.rank)

    def _reseed(self) -> None:
        # Every rank draws the same number from the loop's stream (the streams stay in step);
        # the rank's offset gives each shard its own dropout masks.
        torch.manual_seed((int(self.rng.integers(2**63)) + self.rank) % 2**63)

    def loss(self, x: Array, y: Array) -> tuple[float, Array]:
        self.steps += 1
        if self.fail is not None and self.steps == self.fail[0]:
            if self.fail[1]:
                os._exit(7)
            raise RuntimeError(f"injected failure at step {self.steps} ({FAIL_ENV})")
        n = len(y)
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        lo, hi = int(bounds[self.rank]), int(bounds[self.rank + 1])
        if hi == lo:
            raise NetspecError.at(
                f"a batch of {n} samples leaves rank {self.rank} of {self.world} without any",
                hint="choose a batch (and training-set size) of at least one sample per process",
                exit_code=EXIT_RUNTIME,
            )
        index = np.arange(lo, hi)
        value, out = self._forward(x[index], y[index])
        self._pending = value * ((hi - lo) * self.world / n)  # DDP divides by world
        total = value.detach() * ((hi - lo) / n)
        dist.all_reduce(total)
        return float(total), self._gather(out.detach(), bounds)

    def _gather(self, out: torch.Tensor, bounds: np.ndarray) -> Array:
        """The whole batch's outputs, every rank's shard in order (padded to one size)."""
        sizes = np.diff(bounds)
        most = int(sizes.max())
        pad = out.new_zeros((most - len(out), *out.shape[1:]))
        parts = [out.new_empty((most, *out.shape[1:])) for _ in sizes]
        dist.all_gather(parts, torch.cat([out, pad]))
        return torch.cat([p[:k] for p, k in zip(parts, sizes, strict=True)]).cpu().numpy()

    def update(self, lr: float) -> None:
        super().update(lr)
        with torch.no_grad():
            for b in self.buffers:  # running statistics: rank 0's, as DDP's own default
                dist.broadcast(b, 0)


def _fail_at(value: str | None, rank: int) -> tuple[int, bool] | None:
    if not value:
        return None
    parts = value.split(":")
    if int(parts[0]) != rank:
        return None
    return int(parts[1]), parts[2:] == ["exit"]


def _synchronise(module: NodeModule) -> None:
    """Batch norm over the global batch: the shards' sums are all-reduced (differentiably)."""
    plain = module.forward
    op: Any = module.op

    def forward(*xs: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return plain(*xs)
        p = module.arrays()
        return sync_batch_norm(xs[0], p, op.momentum, op.eps)

    module.forward = forward  # type: ignore[method-assign]


def sync_batch_norm(
    x: torch.Tensor, p: dict[str, torch.Tensor], momentum: float, eps: float
) -> torch.Tensor:
    """torch.nn.functional.batch_norm in training, with the statistics of every rank's shard:
    biased variance to normalise, the unbiased one into the running buffer (PyTorch's rule)."""
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    dims = [0, *range(2, x.ndim)]
    count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
    stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # type: ignore[no-untyped-call]
    n = stats[-1]
    mean = stats[:c] / n
    var = stats[c : 2 * c] / n - mean * mean
    with torch.no_grad():
        p["running_mean"].mul_(1 - momentum).add_(momentum * mean)
        p["running_var"].mul_(1 - momentum).add_(momentum * var * n / (n - 1))
    shape = (1, c, *([1] * (x.ndim - 2)))
    scale = p["weight"].view(shape) * torch.rsqrt(var.view(shape) + eps)
    return (x - mean.view(shape)) * scale + p["bias"].view(shape)


def _backend(device: str) -> str:
    return "nccl" if resolve_device(device).type == "cuda" else "gloo"


def run_rank(job: Job, place: Launched, progress: Progress | None) -> FitResult:
    """One rank's run in a process group already joined; only rank 0 writes and reports."""
    device = job.trainer.get("device", "auto")
    if resolve_device(device).type == "cuda":
        torch.cuda.set_device(place.local_rank)
        device = f"cuda:{place.local_rank}"
    sync = job.sync_batchnorm
    sync = resolve_device(device).type == "cuda" if sync is None else sync
    kw = {**job.trainer, "device": device}

    def make(
        analysis: Analysis, spec: TrainSpec, init_rng: np.random.Generator, rng: np.random.Generator
    ) -> DistributedTrainer:
        return DistributedTrainer(
            analysis, spec, init_rng, rng, place=place, sync_batchnorm=sync, **kw
        )

    options = {**job.options, "progress": progress if place.rank == 0 else None}
    if place.rank != 0:
        options["on_epoch"] = None
    result = run_fit(job.analysis, job.spec, job.out_dir, make, writes=place.rank == 0, **options)
    if os.environ.get(WEIGHTS_ENV):
        save_arrays(Path(os.environ[WEIGHTS_ENV]) / f"rank{place.rank}.npz", result.params)
    return result


def join(job: Job, place: Launched) -> FitResult:
    """This process as one rank of an external launcher's job (torchrun's environment)."""
    dist.init_process_group(_backend(job.trainer.get("device", "auto")), init_method="env://")
    try:
        return run_rank(job, place, job.options.get("progress"))
    finally:
        dist.destroy_process_group()
