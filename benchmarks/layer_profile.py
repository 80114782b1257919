"""Where a netspec training step spends its time: forward and backward per node, loss, update.

    .venv/bin/python benchmarks/layer_profile.py resnet20_b32 [lenet_b64 ...] [--steps 5]

Replays `Executor.forward/backward` node by node with a clock around each op call (the median
over the steps); the totals also list the loss and the optimizer. Each conv/dense/lstm node
gets its achieved GFLOP/s (forward 2 MACs, backward 4, or 2 where no input gradient is wanted)
against the float32 GEMM peak measured here, and the step's non-GEMM share is everything else
(batchnorm, pools, activations, adds, flatten, loss, optimizer, the executor's gradient sums).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import gemm_peak_gflops
from workloads import LR, MU, TRAINING, Workload, batch_of, fresh_params

from netspec.engine.executor import Executor, trainable_names
from netspec.engine.optimizers import Momentum
from netspec.losses import LOSSES
from netspec.ops import winograd
from netspec.ops.base import Ctx
from netspec.ops.im2col import Grid
from netspec.ops.minorgrid import MinorGrid

GEMM_OPS = ("conv1d", "conv2d", "dense", "lstm", "gru", "rnn")
# Inside a conv: the data movement around its GEMMs, timed by wrapping these functions.
CONV_PARTS = (
    (Grid, "load"),
    (Grid, "im2col"),
    (Grid, "rows"),
    (Grid, "rows_adjoint"),
    (Grid, "col2im"),
    (Grid, "scatter_output"),
    (MinorGrid, "load"),
    (MinorGrid, "im2col"),
    (MinorGrid, "col2im"),
    (MinorGrid, "scatter_output"),
    (winograd, "_input_transform"),
    (winograd, "_output_transform"),
)


def _clocked(owner: Any, name: str, totals: dict[str, float]) -> None:
    """Replace owner.name with a wrapper that adds its time to totals["Owner.name"]."""
    fn = getattr(owner, name)
    key = f"{owner.__name__.rsplit('.', 1)[-1]}.{name}"

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="+", choices=[w.name for w in TRAINING])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    peak = gemm_peak_gflops()
    print(f"float32 GEMM peak {peak:.1f} GFLOP/s (1024^3, best of 7)")
    parts: dict[str, float] = defaultdict(float)
    for owner, fn in CONV_PARTS:
        _clocked(owner, fn, parts)
    for name in args.workload:
        parts.clear()
        profile({w.name: w for w in TRAINING}[name], args.steps, peak)
        print(f"  inside the convs, per step ({args.steps + 1} steps incl. warm-up, mean):")
        for fn, t in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"    {fn:<26} {t / (args.steps + 1) * 1e3:8.2f} ms")


def profile(w: Workload, steps: int, peak: float) -> None:
    """Print one workload's per-op and per-node table."""
    analysis = w.analysis()
    params = fresh_params(analysis)
    x, y = batch_of(analysis, w.batch)
    ex = Executor(analysis, np.float32)
    opt = Momentum(0.0, MU)
    loss = LOSSES["cross_entropy"]
    names = trainable_names(analysis)
    ctx = Ctx(train=True)
    (out,) = analysis.network.outputs
    times: dict[tuple[str, str], list[float]] = defaultdict(list)

    for _ in range(steps + 1):
        values = {analysis.network.inputs[0].name: x}
        caches = {}
        for step in ex.steps:
            if step.is_input:
                continue
            t = time.perf_counter()
            # As the executor runs it: a first layer is told nobody wants its input gradient.
            step_ctx = ctx if step.input_grad else replace(ctx, input_grad=False)
            yv, caches[step.node.name] = step.node.op.forward(
                [values[i] for i in step.node.inputs], ex._slice(step, params), step_ctx
            )
            times[(step.node.name, "fwd")].append(time.perf_counter() - t)
            values[step.node.name] = yv
        t = time.perf_counter()
        _, dout = loss(values[out], y)
        times[("loss", "fwd+bwd")].append(time.perf_counter() - t)
        grads = {out: dout}
        dparams = {}
        for step in reversed(ex.steps):
            if step.is_input or not step.needs_grad:
                continue
            t = time.perf_counter()
            dxs, dp = step.node.op.backward(
                grads.pop(step.node.name), caches.pop(step.node.name), ex._slice(step, params)
            )
            times[(step.node.name, "bwd")].append(time.perf_counter() - t)
            t = time.perf_counter()
            for i, dx in zip(step.node.inputs, dxs, strict=True):
                if dx is not None:
                    grads[i] = grads[i] + dx if i in grads else dx
            times[("executor", "grad sums")].append(time.perf_counter() - t)
            dparams.update({f"{step.node.name}.{k}": v for k, v in dp.items()})
        t = time.perf_counter()
        opt.step(params, {n: dparams[n] for n in names}, LR)
        times[("optimizer", "update")].append(time.perf_counter() - t)

    # What each step ran: the executor may run a node's op under another node's name (relu
    # after the max pool it feeds), so the ops come from its plan, not from the network.
    ops = {s.node.name: s.node.op.op for s in ex.steps}
    per_step = {
        k: statistics.median(v[1:]) if len(v) > steps else sum(v[1:]) / steps
        for k, v in times.items()
    }
    # grad sums are recorded per node: sum them per step.
    per_step[("executor", "grad sums")] = sum(times[("executor", "grad sums")]) / (steps + 1)
    total = sum(per_step.values())
    by_op: dict[str, float] = defaultdict(float)
    for (name, phase), t in per_step.items():
        by_op[f"{ops.get(name, name)} {phase}"] += t
    print(f"{w.name}: {total * 1e3:.1f} ms per step (sum of parts)")
    for key, t in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<28} {t * 1e3:8.2f} ms  {100 * t / total:5.1f}%")
    gemm = sum(t for (name, _), t in per_step.items() if ops.get(name) in GEMM_OPS)
    print(f"  non-GEMM share {100 * (1 - gemm / total):.1f}% ({(total - gemm) * 1e3:.1f} ms)")
    print(f"  slowest nodes (GFLOP/s for conv/dense/lstm, peak {peak:.0f}):")
    dx = {s.node.name: s.input_grad for s in ex.steps}
    for (name, phase), t in sorted(per_step.items(), key=lambda kv: -kv[1])[:16]:
        rate = ""
        if ops.get(name) in GEMM_OPS:
            macs = analysis.layers[name].macs * w.batch
            flops = 2 * macs if phase == "fwd" else (4 if dx[name] else 2) * macs
            rate = f"{flops / t / 1e9:6.1f} GFLOP/s {100 * flops / t / 1e9 / peak:4.0f}%"
        print(f"    {name:<20} {ops.get(name, ''):<12} {phase:<9} {t * 1e3:8.2f} ms  {rate}")


if __name__ == "__main__":
    main()
