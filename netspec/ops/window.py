"""The sliding window shared by every conv and pool, written once: its shape rule, attribute
types and validators, and the strided views that read and scatter windows.

out = floor((H + P_lo + P_hi - D*(K-1) - 1) / S) + 1   (ceil instead of floor with ceil_mode)

With symmetric padding P this is the textbook (H + 2P - FH) / S + 1 when D = 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, ValidationInfo, field_validator

from netspec.errors import ShapeError
from netspec.ops.base import Array, Op, Shape, expect_rank

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
# One value for every spatial dimension, or one per dimension (length checked per op).
Sizes = PosInt | tuple[PosInt, ...]
# An int pads both sides; n values pad each dimension symmetrically; 2n values are ONNX's
# (begin..., end...); "same"/"valid" are resolved against the input size.
PaddingAttr = NonNegInt | tuple[NonNegInt, ...] | Literal["same", "valid"]

Pads = list[tuple[int, int]]


def as_tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """Broadcast an int or check a list to one value per spatial dimension."""
    if isinstance(value, int):
        return (value,) * n
    values = tuple(value)
    if len(values) != n:
        raise ShapeError(f"{name} has {len(values)} values for {n} spatial dimension(s)")
    return values


def resolve_padding(
    padding: PaddingAttr,
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
    size: int,
    kernel: int,
    stride: int,
    dilation: int,
    pads: tuple[int, int],
    ceil: bool = False,
    drop_padding_start: bool = True,
) -> int:
    """Output length of one spatial dimension; raises ShapeError when the window does not fit.

    With ceil, a last window that would start in the right padding is dropped, as PyTorch,
    onnxruntime and ONNX since opset 22 do; drop_padding_start=False gives the count of ONNX's
    pools before opset 22, which keep it. With ceil, a window up to stride - 1 longer than the
    padded input still gives one window (it starts at the first row and hangs off the end), as
    the rule, PyTorch and onnxruntime say.
    """
    span = dilation * (kernel - 1) + 1
    padded = size + pads[0] + pads[1]
    if ceil:
        out = -(-(padded - span) // stride) + 1
        # PyTorch/ONNX: the last window must start inside the input or left padding.
        if drop_padding_start and (out - 1) * stride >= size + pads[0]:
            out -= 1
    else:
        out = (padded - span) // stride + 1
    if out < 1:
        what = f"kernel {kernel}" + (
            f" (dilation {dilation}: spans {span})" if dilation > 1 else ""
        )
        rule = f"{'ceil' if ceil else 'floor'}((H + 2P - D*(K-1) - 1) / S) + 1"
        raise ShapeError(
            f"{what} is larger than its padded input {padded} (size {size} + padding "
            f"{pads[0]}+{pads[1]}); rule: out = {rule}",
            hint="use a smaller kernel, add padding, or remove an earlier downsampling layer",
        )
    return out


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


# ---------------------------------------------------------------------------------------------
# Window geometry and the strided-view machinery of the convs and pools


def check_sizes(value: Any, info: ValidationInfo, ndim: int) -> Any:
    """Field validator body: a list attribute needs one value per spatial dimension."""
    if isinstance(value, tuple) and len(value) != ndim:
        wanted = "1 value" if ndim == 1 else f"1 or {ndim} values"
        raise ValueError(f"{info.field_name} needs {wanted}, got {len(value)}")
    return value


def check_padding(value: Any, ndim: int) -> Any:
    if isinstance(value, tuple) and len(value) not in (ndim, 2 * ndim):
        raise ValueError(
            f"padding needs 1, {ndim} or {2 * ndim} values (per dimension, or begin... end...), "
            f"got {len(value)}"
        )
    return value


def geometry(
    sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    padding: PaddingAttr,
    ceil: bool = False,
) -> tuple[Pads, tuple[int, ...]]:
    """Explicit (before, after) pads and the output size of every spatial dimension."""
    pads = resolve_padding(padding, sizes, kernel, stride, dilation)
    out = tuple(
        out_size(h, k, s, d, p, ceil)
        for h, k, s, d, p in zip(sizes, kernel, stride, dilation, pads, strict=True)
    )
    return pads, out


def dropped_warnings(
    sizes: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Pads,
    out: Sequence[int],
) -> list[str]:
    """A warning (at most one) naming each dimension whose last real rows no window reaches."""
    units = ("row", "column") if len(sizes) == 2 else ("position",) * len(sizes)
    parts = []
    for unit, h, k, s, d, p, o in zip(
        units, sizes, kernel, stride, dilation, pads, out, strict=True
    ):
        n = dropped(h, k, s, d, p, o)
        if n > 0:
            dil = f", dilation {d}" if d > 1 else ""
            parts.append(
                f"the last {n} input {unit}(s) ({h} {unit}s, kernel {k}, stride {s}{dil}, "
                f"padding {p[0]}+{p[1]})"
            )
    if not parts:
        return []
    return [f"the window never covers {' nor '.join(parts)}: they are silently dropped"]


class Windowed(Op):
    """The base of every conv and pool: a window slid over `ndim` spatial axes after channels.

    It checks the list attributes against `ndim`, finds the geometry (explicit pads and the
    output size) and warns about rows no window reaches. Subclasses declare the fields
    themselves (`kernel`, `stride`, `padding`, `dilation`, where their attribute order wants
    them) and say in `_kernel` what kernel, stride and dilation they mean.
    """

    ndim: ClassVar[int] = 2
    channels_first: ClassVar[bool] = True

    if TYPE_CHECKING:
        padding: PaddingAttr

    @field_validator("kernel", "stride", "dilation", check_fields=False)
    @classmethod
    def _one_per_dim(cls, value: Any, info: ValidationInfo) -> Any:
        return check_sizes(value, info, cls.ndim)

    @field_validator("padding", check_fields=False)
    @classmethod
    def _padding_len(cls, value: Any) -> Any:
        return check_padding(value, cls.ndim)

    def _kernel(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(kernel, stride, dilation), one value per spatial axis."""
        raise NotImplementedError

    def _ceil(self) -> bool:
        return False

    def _geometry(self, x: Shape) -> tuple[Pads, tuple[int, ...]]:
        """Explicit pads and the output's spatial sizes for a per-sample input (C, *spatial)."""
        k, s, d = self._kernel()
        return geometry(x[1:], k, s, d, self.padding, self._ceil())

    def _expect_spatial(self, x: Shape) -> None:
        dims = "channels, length" if self.ndim == 1 else "channels, height, width"
        expect_rank(self.kind(), x, (self.ndim + 1,), dims)

    def warnings(self, inputs: Sequence[Shape]) -> list[str]:
        k, s, d = self._kernel()
        pads, out = self._geometry(inputs[0])
        return dropped_warnings(inputs[0][1:], k, s, d, pads, out)

    def _torch_fn(self, torch: Any, name: str) -> Any:
        """torch.nn.functional's n-d version of `name` (conv, max_pool, avg_pool)."""
        return getattr(torch.nn.functional, f"{name}{self.ndim}d")


def pad_input(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """Pad the spatial axes (2 onward) of a batch-first (N, C, *spatial) array."""
    if not any(lo or hi for lo, hi in pads):
        return x
    return np.pad(x, [(0, 0), (0, 0), *pads], constant_values=value)


def symmetric(pads: Pads) -> tuple[int, ...] | None:
    """The per-dimension padding when every dimension pads both sides alike, else None."""
    return tuple(lo for lo, _ in pads) if all(lo == hi for lo, hi in pads) else None


def torch_pad(torch: Any, x: Any, pads: Pads, value: float = 0.0) -> Any:
    """pad_input on a torch tensor: F.pad lists (before, after) from the last axis backwards."""
    if not any(lo or hi for lo, hi in pads):
        return x
    flat = [v for pair in reversed(pads) for v in pair]
    return torch.nn.functional.pad(x, flat, value=value)


def windows(
    xp: Array, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Shape
) -> Array:
    """A (N, C, *out, *kernel) view of every window of the padded input; nothing is copied."""
    n = len(kernel)
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    view = sliding_window_view(xp, span, axis=tuple(range(2, 2 + n)))  # (N, C, *P, *span)
    starts = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, stride, strict=True))
    taps = tuple(slice(None, None, d) for d in dilation)
    return view[(slice(None), slice(None), *starts, *taps)]


def scatter_windows(
    shape: Shape,
    dtype: Any,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out: Shape,
    piece: Callable[[int, tuple[int, ...]], Array],
) -> Array:
    """col2im: sum per-window gradients back onto a padded input of `shape`.

    `piece(k, offset)` gives the (N, C, *out) gradient that kernel tap `offset` (flat index `k`,
    C order) sends to its input positions. One strided add per tap: within a tap the positions
    are distinct, so `+=` on the slice never loses a contribution.
    """
    dxp = np.zeros(shape, dtype=dtype)
    for k, offset in enumerate(itertools.product(*(range(kk) for kk in kernel))):
        region = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(offset, dilation, out, stride, strict=True)
        )
        dxp[(slice(None), slice(None), *region)] += piece(k, offset)
    return dxp


def crop(dxp: Array, pads: Pads, sizes: Sequence[int]) -> Array:
    """Drop the padding again: the inverse of pad_input for gradients."""
    inner = tuple(slice(lo, lo + h) for (lo, _), h in zip(pads, sizes, strict=True))
    return dxp[(slice(None), slice(None), *inner)]


def _tap_region(
    offset: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Shape
) -> tuple[slice, ...]:
    """The input positions kernel tap `offset` reads for every output position (a strided slice)."""
    return tuple(
        slice(t * d, t * d + (o - 1) * s + 1, s)
        for t, d, o, s in zip(offset, dilation, out, stride, strict=True)
    )


def tap_regions(
    kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], out: Shape
) -> list[tuple[slice, ...]]:
    """Every kernel tap's strided slice of the padded input, taps in C order."""
    return [
        _tap_region(offset, stride, dilation, out)
        for offset in itertools.product(*(range(kk) for kk in kernel))
    ]
