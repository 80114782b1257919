"""Winograd F(2x2, 3x3) against im2col and torch, for every conv configuration it takes.

Each case is a conv2d sent through Winograd in the forward pass and in the input gradient:
the rule's own window (`winograd.applies` once `winograd.ENABLED` is on; off by default, see
winograd.py) and, with the rule's size limits lifted, the geometries its arithmetic must also
get right (partial tiles, every padding, fewer or more filters, a batch split into chunks).
The forward output, dx, dW and db must agree, in float32, with the same op forced onto im2col
and with torch.nn.functional.conv2d's autograd.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from netspec.ops import winograd
from netspec.ops.base import Array, Ctx
from netspec.ops.conv import Conv2d

# Relative to the largest magnitude of each result; measured max 1.6e-6 (forward; im2col's own
# 1.5e-6), 5.9e-7 (dx), 2.0e-6 (dW, which stays im2col), 1.8e-6 (db).
RTOL = 2e-5

# (channels, filters, (height, width), padding, bias): the rule's window (128 and more
# channels, 14x14 to 16x16 outputs), then even and odd output sizes (partial tiles), padding 0,
# 1, 2 and per-axis, more or fewer filters than channels.
WINDOW = [
    (128, 128, (16, 16), 1, True),
    (128, 160, (15, 15), 1, False),
    (144, 128, (16, 16), 0, True),
]
CASES = [
    *WINDOW,
    (16, 16, (32, 32), 1, True),
    (16, 32, (33, 32), 1, False),
    (32, 16, (32, 35), "same", True),
    (16, 16, (34, 34), 0, True),
    (16, 24, (33, 32), 2, True),
    (24, 16, (32, 33), (0, 2), False),
    (16, 16, (32, 32), (2, 1), True),
]


def _numpy(op: Conv2d, x: Array, p: dict[str, Array], dy: Array) -> tuple[Array, ...]:
    y, cache = op.forward([x], p, Ctx())
    (dx,), grads = op.backward(dy, cache, p)
    assert dx is not None
    return (y, dx, grads["weight"], *([grads["bias"]] if "bias" in grads else []))


def _torch(op: Conv2d, x: Array, p: dict[str, Array], dy: Array) -> tuple[Array, ...]:
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(p["weight"], requires_grad=True)
    bt = torch.tensor(p["bias"], requires_grad=True) if "bias" in p else None
    yt = F.conv2d(xt, wt, bt, padding=op.padding)
    yt.backward(torch.tensor(dy))
    grads = [xt.grad, wt.grad, *([bt.grad] if bt is not None else [])]
    return (yt.detach().numpy(), *(g.numpy() for g in grads if g is not None))


def _rel(a: Array, b: Array) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("c", "f", "size", "padding", "bias"), CASES)
def test_winograd_matches_im2col_and_torch(
    c: int, f: int, size: tuple[int, int], padding: Any, bias: bool, chunked: bool, monkeypatch: Any
) -> None:
    monkeypatch.setattr(winograd, "ENABLED", True)
    if (c, f, size, padding, bias) not in WINDOW:  # the arithmetic outside the rule's window
        monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
        monkeypatch.setattr(winograd, "MIN_PIXELS", 1)
        monkeypatch.setattr(winograd, "MAX_PIXELS", 1 << 30)
    if chunked:  # one sample a chunk: the batch of two in two chunks
        monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
        monkeypatch.setattr(winograd, "MIN_TILES", 1)
    op = Conv2d(filters=f, kernel=3, padding=padding, bias=bias)
    pads, out = op._geometry((c, *size))
    # The case must be one the rule sends through Winograd, both ways.
    assert op._winograd(c, f, pads, out)
    assert op._winograd(f, c, [(2 - lo, 2 - hi) for lo, hi in pads], size)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, c, *size)).astype(np.float32)
    p = {"weight": (rng.standard_normal((f, c, 3, 3)) / (3 * c**0.5)).astype(np.float32)}
    if bias:
        p["bias"] = rng.standard_normal(f).astype(np.float32)
    dy = rng.standard_normal((2, f, *out)).astype(np.float32)
    calls: list[int] = []
    real = winograd.correlate
    monkeypatch.setattr(winograd, "correlate", lambda *a: calls.append(1) or real(*a))
    wino = _numpy(op, x, p, dy)
    assert len(calls) == 2  # forward and dx
    monkeypatch.setattr(winograd, "applies", lambda *a: False)
    plain = _numpy(op, x, p, dy)
    ref = _torch(op, x, p, dy)
    assert len(calls) == 2
    for got, im2col, want in zip(wino, plain, ref, strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        assert _rel(got, im2col) < RTOL
        assert _rel(got, want) < RTOL


def test_the_rule_is_off_until_the_memory_estimate_counts_it(monkeypatch: Any) -> None:
    args = dict(channels=128, filters=128, out=(16, 16), groups=1, pads=((1, 1), (1, 1)))
    base = dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1))
    assert not winograd.applies(**base, **args)  # type: ignore[arg-type]
    monkeypatch.setattr(winograd, "ENABLED", True)
    assert winograd.applies(**base, **args)  # type: ignore[arg-type]


def test_the_rule_leaves_other_convolutions_to_im2col(monkeypatch: Any) -> None:
    monkeypatch.setattr(winograd, "ENABLED", True)
    args = dict(channels=128, filters=128, out=(16, 16), groups=1, pads=((1, 1), (1, 1)))
    base = dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1))
    assert winograd.applies(**base, **args)  # type: ignore[arg-type]
    assert winograd.applies(**{**base, **args, "out": (14, 14)})  # type: ignore[arg-type]
    for change in (
        {"kernel": (5, 5)},
        {"stride": (2, 2)},
        {"dilation": (2, 2)},
        {"groups": 2},
        {"channels": 64},  # ResNet-20's widest: im2col measured faster
        {"filters": 64},
        {"out": (32, 32)},  # large maps: the input transform runs out of cache
        {"out": (8, 8)},  # small maps: too few tiles for the batched GEMM
        {"pads": ((3, 3), (1, 1))},
    ):
        assert not winograd.applies(**{**base, **args, **change})  # type: ignore[arg-type]
