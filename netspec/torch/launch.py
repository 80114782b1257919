"""`--nproc N`: N worker processes on this machine, started by torch.multiprocessing (spawn),
each a rank of a gloo (CPU) or NCCL (CUDA) process group on 127.0.0.1 (netspec.torch.
distributed runs them). Rank 0 sends its progress and its result through a queue; a worker
that fails stops the others, and the error names its rank.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import (
    ProcessException,
    ProcessExitedException,
    start_processes,
)

from netspec import runs
from netspec.arrays import load_arrays
from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.torch.distributed import Job, run_rank
from netspec.torch.trainer import resolve_device
from netspec.training.contracts import FitResult, Progress
from netspec.training.plan import Launched

POLL_S = 0.05
INTERRUPT_GRACE_S = 10.0  # after Ctrl-C, for rank 0 to write its weights and history
# How gloo says that a peer went away (a RuntimeError, not a DistError): a rank that only saw
# that is not the cause.
LOST = ("by peer", "remote worker")


class Relay:
    """Rank 0's Progress: each call goes through the queue to the parent's progress bar."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def run_start(self, engine: str, device: str) -> None:
        self.queue.put(("progress", "run_start", (engine, device)))

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None:
        self.queue.put(("progress", "epoch_start", (epoch, epochs, samples)))

    def batch_end(self, samples_done: int, running_loss: float) -> None:
        self.queue.put(("progress", "batch_end", (samples_done, running_loss)))

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.queue.put(("progress", "epoch_end", (record,)))


@dataclass
class _Inbox:
    """What the workers said: rank 0's result, and each failed rank's report, in the order
    they came (a rank that fails reports before its peers can see it go)."""

    result: FitResult | None = None
    reports: dict[int, tuple[str, Any]] = field(default_factory=dict)


def _worker(rank: int, world: int, port: int, queue: Any, job: Job) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    import torch.distributed as dist

    from netspec.training import loop

    loop.CHECKPOINT_INTERVAL_S = job.checkpoint_interval_s  # this process is the worker's own
    device = resolve_device(job.trainer.get("device", "auto"))
    if device.type == "cpu":  # the cores shared out, not N times all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
        place = Launched(rank, world, rank)
        result = run_rank(job, place, Relay(queue) if rank == 0 else None)
        if rank == 0:  # the weights are in weights.npz: not pickled through the queue
            queue.put(("result", dataclasses.replace(result, params={})))
        dist.destroy_process_group()
    except NetspecError as e:
        queue.put(("report", rank, ("netspec", (e.diagnostics, e.exit_code))))
        raise
    except Exception as e:
        lost = isinstance(e, dist.DistError) or any(w in str(e) for w in LOST)
        kind = "comm" if lost else "crash"
        queue.put(("report", rank, (kind, f"{type(e).__name__}: {e}")))
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(job: Job, nproc: int) -> FitResult:
    """Train `job` on `nproc` local processes; rank 0's FitResult, its weights read back."""
    device = resolve_device(job.trainer.get("device", "auto"))
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise NetspecError.at(
            f"--nproc {nproc} needs {nproc} GPUs; PyTorch sees {torch.cuda.device_count()}",
            hint=f"use --nproc {torch.cuda.device_count()} or fewer",
            exit_code=EXIT_USAGE,
        )
    progress: Progress | None = job.options.get("progress")
    job = dataclasses.replace(job, options={**job.options, "progress": None})
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    inbox = _Inbox()
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    args = (nproc, _free_port(), queue, job)
    procs = start_processes(_worker, args, nprocs=nproc, join=False)  # type: ignore[no-untyped-call]
    interrupted = False
    try:
        try:
            _wait(procs, queue, progress, inbox, None)
        except KeyboardInterrupt:  # the workers got Ctrl-C too: their loops save and stop
            interrupted = True
            _wait(procs, queue, progress, inbox, INTERRUPT_GRACE_S)
    except ProcessException as e:
        _drain(queue, progress, inbox)
        runs.remove_stale_temporaries(job.out_dir)  # what a killed rank 0 was writing
        if not (interrupted and inbox.result is not None):
            raise _failure(e, inbox, nproc) from None
    _drain(queue, progress, inbox)
    if inbox.result is None:
        raise NetspecError.at("rank 0 ended without a result", exit_code=EXIT_RUNTIME)
    weights = inbox.result.weights_path
    params = load_arrays(weights) if weights.is_file() else {}
    return dataclasses.replace(inbox.result, params=params)


def _wait(
    procs: Any, queue: Any, progress: Progress | None, inbox: _Inbox, limit: float | None
) -> None:
    """Relay the workers' messages until they have all ended (or `limit` seconds passed:
    then the ones left, stuck waiting for a peer that stopped, are terminated)."""
    start = time.monotonic()
    while not procs.join(timeout=POLL_S, grace_period=5):
        _drain(queue, progress, inbox)
        if limit is not None and time.monotonic() - start > limit:
            for process in procs.processes:
                if process.is_alive():
                    process.terminate()
            procs.join(grace_period=5)
            break


def _drain(queue: Any, progress: Progress | None, inbox: _Inbox) -> None:
    while not queue.empty():
        message = queue.get()
        if message[0] == "progress" and progress is not None:
            getattr(progress, message[1])(*message[2])
        elif message[0] == "result":
            inbox.result = message[1]
        elif message[0] == "report":
            inbox.reports[message[1]] = message[2]


def _failure(e: ProcessException, inbox: _Inbox, nproc: int) -> NetspecError:
    """The first cause: a netspec error (the same on every rank), a rank's exception, a rank
    that died without a word; a rank that only lost its peers is named last."""
    reports = inbox.reports
    for kind in ("netspec", "crash"):
        ranks = [r for r, (k, _) in reports.items() if k == kind]  # first come first
        if ranks and kind == "netspec":
            diagnostics, code = reports[ranks[0]][1]
            return NetspecError(diagnostics, code)
        if ranks:
            return _rank_failed(ranks[0], f"failed: {reports[ranks[0]][1]}", nproc)
    dead = e.error_index
    if dead in reports:  # it only saw a peer vanish: the peer that said nothing died first
        silent = [r for r in range(nproc) if r not in reports]
        dead = silent[0] if silent else dead
    how = "died"
    if isinstance(e, ProcessExitedException) and dead == e.error_index:
        how = f"died ({e.signal_name or f'exit code {e.exit_code}'})"
    return _rank_failed(dead, how, nproc)


def _rank_failed(rank: int, how: str, nproc: int) -> NetspecError:
    return NetspecError.at(
        f"worker rank {rank} of {nproc} {how}; the other workers were stopped",
        hint="the run folder keeps the last complete checkpoint: continue with --resume",
        exit_code=EXIT_RUNTIME,
    )
