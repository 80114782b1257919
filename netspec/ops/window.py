"""The sliding-window rule shared by every conv and pool, written once.

out = floor((H + P_lo + P_hi - D*(K-1) - 1) / S) + 1   (ceil instead of floor with ceil_mode)

With symmetric padding P this is the textbook (H + 2P - FH) / S + 1 when D = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from netspec.errors import ShapeError

Padding = int | tuple[int, ...] | Literal["same", "valid"]


def as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """Broadcast an int or check a list to one value per spatial dimension."""
    if isinstance(value, int):
        return (value,) * n
    values = tuple(value)
    if len(values) != n:
        raise ShapeError(f"{name} has {len(values)} values for {n} spatial dimension(s)")
    return values


def resolve_padding(
    padding: Padding,
    sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """Explicit (before, after) pads per spatial dimension.

    `same` follows ONNX's SAME_UPPER (and TensorFlow): output = ceil(H / S), odd padding
    goes after. An int pads both sides; a list of n values pads each dimension symmetrically;
    a list of 2n values is (begin..., end...) as in ONNX `pads`.
    """
    n = len(sizes)
    if padding == "valid":
        return [(0, 0)] * n
    if padding == "same":
        pads = []
        for h, k, s, d in zip(sizes, kernel, stride, dilation, strict=True):
            out = -(-h // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - h, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * n
    values = tuple(padding)
    if len(values) == n:
        return [(p, p) for p in values]
    if len(values) == 2 * n:
        return list(zip(values[:n], values[n:], strict=True))
    raise ShapeError(f"padding has {len(values)} values; give 1, {n} or {2 * n}")


def out_size(
    size: int, kernel: int, stride: int, dilation: int, pads: tuple[int, int], ceil: bool = False
) -> int:
    """Output length of one spatial dimension; raises ShapeError when the window does not fit."""
    span = dilation * (kernel - 1) + 1
    padded = size + pads[0] + pads[1]
    if span > padded:
        what = f"kernel {kernel}" + (
            f" (dilation {dilation}: spans {span})" if dilation > 1 else ""
        )
        raise ShapeError(
            f"{what} is larger than its padded input {padded} (size {size} + padding "
            f"{pads[0]}+{pads[1]}); rule: out = floor((H + 2P - D*(K-1) - 1) / S) + 1",
            hint="use a smaller kernel, add padding, or remove an earlier downsampling layer",
        )
    if ceil:
        out = -(-(padded - span) // stride) + 1
        # PyTorch/ONNX: the last window must start inside the input or left padding.
        if (out - 1) * stride >= size + pads[0]:
            out -= 1
        return out
    return (padded - span) // stride + 1


def dropped(
    size: int, kernel: int, stride: int, dilation: int, pads: tuple[int, int], out: int
) -> int:
    """How many real (non-padding) input rows no window ever covers.

    Only real rows count: ResNet's stem drops padding only and must stay quiet, while the
    paper's AlexNet (224, 11x11, stride 4, no padding) loses row 223 and should warn.
    Rows inside the last stride gap are skipped by design, as between any two windows (a 1x1
    stride-2 shortcut samples every other row), so they are not reported either.
    """
    last_covered = (out - 1) * stride + dilation * (kernel - 1)  # in padded coordinates
    stride_gap_end = out * stride - 1  # the next window would start after this row
    last_real = pads[0] + size - 1
    return max(0, last_real - max(last_covered, stride_gap_end))
