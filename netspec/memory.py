"""Resource guards: refuse, before anything large is allocated, a network whose memory estimate
exceeds a limit, and an output folder that cannot take a checkpoint. `api` runs them for every
caller, the command line and library users alike.

The estimate is arithmetic on the analysed IR, never a trial allocation:

- parameters and state (float32), plus, when training, their gradients and the optimizer's
  per-parameter slots (momentum 1, Adam 2, ...);
- activations: every layer's output for the batch; training keeps them for the backward pass
  and holds a gradient of the same size, so it counts them twice;
- what each op's forward pass caches (a conv's padded input, a recurrent layer's every step)
  and the temporaries of the layer that needs most (a conv's window matrix, at least one
  sample's: it can be far larger than its output), from each op's `workspace`;
- the data: training's data set as read, split and normalised; predict's inputs and outputs.

Validation and prediction run in chunks that fit this estimate (`eval_chunk`, `--batch`), so
the estimate bounds them too. The interpreter and the libraries already loaded when the check
runs are not counted: the default limit is a share of the memory still available then.

It is an estimate of the arrays netspec owns (NumPy and the interpreter add a little), so the
default limit is a share of the memory the machine has available, not all of it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from netspec.errors import EXIT_RUNTIME, NetspecError

if TYPE_CHECKING:  # imported by the CLI at start-up: keep it light
    from netspec.ir import Analysis
    from netspec.recipe import DataSpec, TrainSpec

BYTES_PER_FLOAT = 4
DEFAULT_SHARE = 0.8  # of the memory available when the command starts
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class Estimate:
    """Bytes a run needs, by kind, and the layers that need the most."""

    what: str  # "training Net (batch 64)"
    params: int
    optimizer: int  # gradients and optimizer slots; 0 for inference
    activations: int  # outputs, forward caches and the largest layer's temporaries
    largest: list[tuple[str, int]] = field(default_factory=list)
    data: int = 0  # the data set in memory (training), or the inputs and outputs (predict)

    @property
    def total(self) -> int:
        return self.params + self.optimizer + self.activations + self.data


def _layer_bytes(analysis: Analysis, training: bool) -> list[tuple[str, int, int, int]]:
    """Per layer: (name, bytes per sample held through the pass, temporaries per sample,
    temporaries independent of the batch). Training holds each output, its gradient and the
    op's cache; inference frees each cache with its step (Executor.forward's `record`)."""
    ops = {node.name: node.op for node in analysis.network.nodes}
    rows = []
    for name in analysis.order:
        info = analysis.layers.get(name)
        if info is None or info.output_shape is None or name not in ops:
            continue
        ws = ops[name].workspace(info.input_shapes, info.output_shape)
        if training:
            rows.append((name, 2 * info.activation_bytes + ws.cache, ws.scratch, ws.fixed))
        else:
            rows.append((name, info.activation_bytes, ws.scratch + ws.cache, ws.fixed))
    return rows


def _activations(rows: list[tuple[str, int, int, int]], batch: int) -> tuple[int, dict[str, int]]:
    """Everything held for `batch` samples, plus the one layer whose temporaries are largest
    (layers run one at a time), and each layer's share."""
    held = {name: h * batch for name, h, _, _ in rows}
    peak = max((s * batch + f for _, _, s, f in rows), default=0)
    return sum(held.values()) + peak, held


def estimate(analysis: Analysis, batch: int, slots: int | None, data: int = 0) -> Estimate:
    """Training memory when `slots` (the optimizer's arrays per parameter) is given, else
    inference memory, for `batch` samples at once; `data` bytes are added as they are.
    Training's validation passes run `eval_chunk` samples at a time, which by construction
    need no more than a training step."""
    training = slots is not None
    per_param = 1 + (1 + slots if slots is not None else 0)  # the array, its gradient, slots
    params = optimizer = 0
    weights: dict[str, int] = {}
    for name in analysis.order:
        info = analysis.layers.get(name)
        if info is None:
            continue
        own = (info.params + info.state) * BYTES_PER_FLOAT
        moving = info.params * BYTES_PER_FLOAT * (per_param - 1)
        params += own
        optimizer += moving
        weights[name] = own + moving
    activations, held = _activations(_layer_bytes(analysis, training), batch)
    layers = sorted(
        ((n, weights.get(n, 0) + held.get(n, 0)) for n in weights), key=lambda item: -item[1]
    )
    mode = "training" if training else "running"
    what = f"{mode} {analysis.network.name} (batch {batch})"
    return Estimate(what, params, optimizer, activations, layers[:3], data)


def training(
    analysis: Analysis, spec: TrainSpec, batch: int | None, data: DataSpec | None
) -> Estimate:
    """A training run's estimate: `batch` (default the recipe's) samples a step, and the data
    set as read, then split into training and validation (a copy), then normalised (a
    temporary and the result)."""
    from netspec.training.resident import resident_bytes

    copies = 2 if data is None or data.normalize == "none" else 4
    held = 0 if data is None else copies * resident_bytes(data)
    steps = spec.batch if batch is None else batch
    return estimate(analysis, steps, len(spec.optimizer.slots), held)


def running(analysis: Analysis, batch: int, rows: int) -> Estimate:
    """Inference on `rows` samples, `batch` at a time: a cast or normalised copy of the inputs
    (already in memory as given), and the outputs twice (the chunks' and their join)."""
    net = analysis.network

    def size(names: Iterable[str]) -> int:
        return rows * sum(BYTES_PER_FLOAT * math.prod(analysis.shape(n)) for n in names)

    io = size(n.name for n in net.inputs) + 2 * size(net.outputs)
    return estimate(analysis, batch, None, io)


def eval_chunk(analysis: Analysis, batch: int, most: int = 1024) -> int:
    """Samples per validation pass: as many as fit in what a training step of `batch` needs
    (inference holds no gradients, so at least `batch`), at most `most`."""
    train, _ = _activations(_layer_bytes(analysis, True), batch)
    rows = _layer_bytes(analysis, False)
    # n samples need at most n * per_sample + fixed; `batch` of them need no more than a
    # training step of `batch`, term by term.
    per_sample = sum(h for _, h, _, _ in rows) + max((s for _, _, s, _ in rows), default=0)
    fixed = max((f for *_, f in rows), default=0)
    fits = max(train - fixed, 0) // max(per_sample, 1)
    return max(1, min(most, max(batch, fits)))


def check_memory(est: Estimate, limit: int | None) -> None:
    """Raise (exit code 3) when the estimate exceeds `limit` bytes; None means no limit."""
    if limit is None or est.total <= limit:
        return
    parts = [f"parameters {human_bytes(est.params)}"]
    if est.optimizer:
        parts.append(f"gradients and optimizer state {human_bytes(est.optimizer)}")
    parts.append(f"activations {human_bytes(est.activations)}")
    if est.data:
        parts.append(f"data {human_bytes(est.data)}")
    largest = ", ".join(f"{name} {human_bytes(size)}" for name, size in est.largest)
    raise NetspecError.at(
        f"{est.what} needs an estimated {human_bytes(est.total)} ({', '.join(parts)}), more "
        f"than the limit of {human_bytes(limit)}; largest layers: {largest}",
        hint="lower the batch size, make the network smaller, or raise --max-memory "
        "(--max-memory none turns the check off)",
        exit_code=EXIT_RUNTIME,
    )


def human_bytes(n: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024:
            return f"{int(n)} B" if suffix == "B" else f"{n:.1f} {suffix}"
        n /= 1024
    return f"{n:,.4g} EiB"


# ---- the limit --------------------------------------------------------------------------------


def parse_limit(text: str) -> int | None:
    """`--max-memory` values: `auto` (the default limit), `none`, bytes, or a number with
    K, M, G or T (powers of 1024). Raises ValueError for anything else."""
    if text.strip().lower() == "auto":
        return default_limit()
    if text.strip().lower() == "none":
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if m is None:
        raise ValueError(f"expected a size such as 4G, 512M or none, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value < 1:
        raise ValueError(f"the limit must be positive, got {text!r}")
    return value


def available_memory() -> int | None:
    """Bytes the process may still use: the smaller of the machine's available memory and a
    cgroup (container) limit, when either can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii").strip()
        if limit != "max":
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
        except (OSError, ValueError, AttributeError):
            return None
    return max(0, min(found))


def default_limit() -> int | None:
    """The default `--max-memory`: a safe share of the memory available now."""
    available = available_memory()
    return None if available is None else int(available * DEFAULT_SHARE)


# --max-memory: a number of bytes, None for no limit, "auto" for a share of what is available.
MemoryLimit = int | None | Literal["auto"]


def limit_bytes(max_memory: MemoryLimit) -> int | None:
    """A `--max-memory` as the bytes it allows (None: no limit)."""
    return default_limit() if max_memory == "auto" else max_memory


# ---- the output folder ------------------------------------------------------------------------


def checkpoint_bytes(analysis: Analysis, slots: int) -> int:
    """Disk a run folder needs: weights, and a checkpoint with the optimizer's slots and early
    stopping's best copy, twice over while an atomic write replaces the old file."""
    arrays = (analysis.total_params + analysis.trainable_params * slots) * BYTES_PER_FLOAT
    return 2 * (arrays + analysis.total_params * BYTES_PER_FLOAT) + (1 << 20)


def check_output_dir(out: Path, need: int) -> None:
    """Create `out` and prove it writable with `need` bytes free, before training starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".netspec-probe-"):
            pass
    except OSError as e:
        raise NetspecError.at(
            f"the output folder {out} is not writable: {e.strerror or e}",
            hint="choose another folder with --out",
            exit_code=EXIT_RUNTIME,
        ) from None
    free = shutil.disk_usage(out).free
    if free < need:
        raise NetspecError.at(
            f"the output folder {out} has {human_bytes(free)} free, but the run's weights and "
            f"checkpoints need about {human_bytes(need)}",
            hint="free some disk space or choose another folder with --out",
            exit_code=EXIT_RUNTIME,
        )
