"""Where a netspec training step spends its time: forward and backward per node, loss, update.

    .venv/bin/python benchmarks/layer_profile.py resnet20_b32 [--steps 5]

Replays `Executor.forward/backward` node by node with a clock around each op call (the median
over the steps); the totals also list the loss and the optimizer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import LR, MU, TRAINING, batch_of, fresh_params

from netspec.engine.executor import Executor, trainable_names
from netspec.engine.optimizers import Momentum
from netspec.losses import LOSSES
from netspec.ops.base import Ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=[w.name for w in TRAINING])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    w = {w.name: w for w in TRAINING}[args.workload]
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

    for _ in range(args.steps + 1):
        values = {analysis.network.inputs[0].name: x}
        caches = {}
        for step in ex.steps:
            if step.is_input:
                continue
            t = time.perf_counter()
            yv, caches[step.node.name] = step.node.op.forward(
                [values[i] for i in step.node.inputs], ex._slice(step, params), ctx
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
        k: statistics.median(v[1:]) if len(v) > args.steps else sum(v[1:]) / args.steps
        for k, v in times.items()
    }
    # grad sums are recorded per node: sum them per step.
    per_step[("executor", "grad sums")] = sum(times[("executor", "grad sums")]) / (args.steps + 1)
    total = sum(per_step.values())
    by_op: dict[str, float] = defaultdict(float)
    for (name, phase), t in per_step.items():
        by_op[f"{ops.get(name, name)} {phase}"] += t
    print(f"{w.name}: {total * 1e3:.1f} ms per step (sum of parts)")
    for key, t in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<28} {t * 1e3:8.2f} ms  {100 * t / total:5.1f}%")
    print("  slowest nodes:")
    for (name, phase), t in sorted(per_step.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {name:<20} {ops.get(name, ''):<12} {phase:<9} {t * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
