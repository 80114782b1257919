"""Winograd F(2x2, 3x3) against im2col, per conv layer: the measurement behind `winograd.applies`.

    .venv/bin/python benchmarks/winograd.py [--reps 7] [--only 16x32,128x16]

For each stride-1 3x3 conv2d geometry (ResNet-20's three stages, then the wider layers of
VGG-style and U-Net-style networks), one op runs through the Winograd path and through im2col
(forward, and forward + backward: dx, dW, db), interleaved in one process (ABBA rounds, each
the best of a few calls), one BLAS thread. Prints the medians, their ratio with the spread of
the per-round ratios, im2col's GFLOP/s counted as a direct convolution (2 flops per MAC
forward, 6 forward + backward), and where Winograd's forward time goes (transforms vs batched GEMM).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from netspec.ops import winograd
from netspec.ops.base import Ctx
from netspec.ops.conv import Conv2d

# (batch, channels = filters, map side): ResNet-20 b32, then wider layers.
LAYERS = (
    (32, 16, 32),
    (32, 32, 16),
    (32, 64, 8),
    (16, 64, 32),
    (16, 128, 16),
    (8, 128, 32),
    (8, 256, 16),
    (4, 256, 32),
    (4, 512, 14),
    (16, 256, 8),
    (8, 512, 7),
)


def _best(fn: Callable[[], Any], calls: int = 3) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _step(op: Conv2d, x: np.ndarray, p: dict[str, np.ndarray], dy: np.ndarray, bwd: bool) -> None:
    _, cache = op.forward([x], p, Ctx())
    if bwd:
        op.backward(dy, cache, p)


def _interleaved(a: Callable[[], Any], b: Callable[[], Any], reps: int) -> tuple[float, ...]:
    """Medians of a and b over ABBA rounds, and the median, min and max of b / a per round."""
    ta, tb = [], []
    for r in range(reps):
        for fn, out in ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta)):
            out.append(_best(fn))
    ratios = [y / x for x, y in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), *_spread(ratios)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _parts(x: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Winograd's forward split: input transform, batched GEMM, output transform (best, s)."""
    n, _, h, wd = x.shape
    pads = ((1, 1), (1, 1))
    th, tw = -(-h // 2), -(-wd // 2)
    u = winograd.kernel_transform(w)
    v = winograd._input_transform(x, pads, th, tw)
    m = np.matmul(v, u)
    return (
        _best(lambda: winograd._input_transform(x, pads, th, tw)),
        _best(lambda: np.matmul(v, u)),
        _best(lambda: winograd._output_transform(m, n, th, tw)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--only", default="", help="CxS geometries, e.g. 16x32,128x16")
    args = parser.parse_args()
    only = {tuple(int(v) for v in s.split("x")) for s in args.only.split(",") if s}
    print(
        "| N, C=F, map | fwd im2col ms | fwd Winograd ms | ratio [min..max] | fwd+bwd im2col ms "
        "| fwd+bwd Winograd ms | ratio [min..max] | im2col GFLOP/s fwd, fwd+bwd "
        "| Winograd fwd: input / GEMM / output ms |"
    )
    print("|---|---:|---:|---|---:|---:|---|---|---|")
    with threadpool_limits(1):
        for n, c, s in LAYERS:
            if not only or (c, s) in only:
                print(_row(n, c, s, args.reps), flush=True)


def _row(n: int, c: int, s: int, reps: int) -> str:
    """One geometry's table row: C = F channels on s x s maps, 3x3, padding 1, batch n."""
    rng = np.random.default_rng(0)
    op = Conv2d(filters=c, kernel=3, padding=1, bias=True)
    x = rng.standard_normal((n, c, s, s)).astype(np.float32)
    w = (rng.standard_normal((c, c, 3, 3)) / (3 * c**0.5)).astype(np.float32)
    p = {"weight": w, "bias": np.zeros(c, np.float32)}
    dy = rng.standard_normal((n, c, s, s)).astype(np.float32)

    def run(on: bool, bwd: bool) -> Callable[[], None]:
        def call() -> None:
            winograd.ENABLED, winograd.MIN_CHANNELS = on, 1  # every geometry, for the measurement
            winograd.MIN_PIXELS, winograd.MAX_PIXELS = 1, 1 << 30
            _step(op, x, p, dy, bwd)

        return call

    row, rates = [f"{n}, {c}, {s}x{s}"], []
    for bwd in (False, True):
        plain, wino, ratio, lo, hi = _interleaved(run(False, bwd), run(True, bwd), reps)
        row += [f"{plain * 1e3:.2f}", f"{wino * 1e3:.2f}", f"{ratio:.2f} [{lo:.2f}..{hi:.2f}]"]
        rates.append(f"{(6 if bwd else 2) * n * c * c * 9 * s * s / plain / 1e9:.1f}")
    winograd.ENABLED = False
    row += [", ".join(rates), " / ".join(f"{t * 1e3:.2f}" for t in _parts(x, w))]
    return "| " + " | ".join(row) + " |"


if __name__ == "__main__":
    main()
