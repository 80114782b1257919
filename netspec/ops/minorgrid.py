"""A batch-minor im2col grid for stride-1 2-D convolutions whose wide grid wastes many columns.

The wide grid (im2col.Grid) lays a chunk's samples side by side along the last spatial axis,
each `pitch` columns apart, and computes every column, also the pitch - O_last between
samples: LeNet's 6 -> 16 valid 5x5 conv over 14x14 maps computes 14 columns for every 10 it
keeps, 1.4x the GEMM work and window matrix. The exact grid has no waste but copies one
O_last-long run per (channel, tap, sample, row), which numpy runs at its per-loop overhead.

Here the sample is the fastest axis instead: the buffer is (C, P_0, P_1 * n) with the n
samples of a position next to each other, so for a fixed (channel, tap, output row) the
O_1 * n window entries are one contiguous run. The window matrix (C, K, O_0 * O_1 * n) is
then one copy of long runs (as the wide grid's) with no column wasted; its price is that
load, the output copy and the output gradient's placement each transpose the batch axis.
MinorGrid has the interface conv.py and im2col.correlate use of im2col.Grid (`wide` False,
so never the row path).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from netspec.ops import im2col
from netspec.ops.base import Array
from netspec.ops.im2col import Grid

# Take this grid where the wide grid computes at least this many columns per kept one.
MIN_WASTE = 1.25


def minor_applies(
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    sizes: tuple[int, ...],
    pads: Sequence[tuple[int, int]],
    out: tuple[int, ...],
    channels: int,
) -> bool:
    """Stride-1 2-D convs off the row path (channels per group * K_last < ROW_PATH_MIN: that
    one needs the wide grid) whose wide grid's sample pitch wastes >= MIN_WASTE columns."""
    if len(kernel) != 2 or any(s != 1 for s in stride) or not all(out):
        return False
    if channels * kernel[-1] >= im2col.ROW_PATH_MIN:
        return False
    wide = Grid.of(kernel, stride, dilation, sizes, tuple(pads), out, 1)  # cached: its pitch
    return wide.pitch >= MIN_WASTE * out[-1]


@dataclass(frozen=True)
class MinorGrid(Grid):
    """One chunk's layout: n samples, buffer (C, P_0 * P_1 * n), sample fastest; `shape` is
    the padded spatial sizes P (per sample, as the exact grid's), `wide` False."""

    dilation: tuple[int, ...] = (1, 1)

    @property
    def columns(self) -> int:
        return math.prod(self.out) * self.n

    @property
    def slack(self) -> int:
        return 0

    @property
    def kernel_last(self) -> int:
        return self.kernel[-1]

    def _data(self, buf: Array) -> Array:
        """The input's positions in a buffer: a (C, S_0, S_1, n) view."""
        (lo0, _), (lo1, _) = self.pads
        full = buf.reshape(buf.shape[0], *self.shape, self.n)
        return full[:, lo0 : lo0 + self.sizes[0], lo1 : lo1 + self.sizes[1]]

    def load(self, x: Array) -> Array:
        """(n, C, S_0, S_1) -> the zero-padded (C, P_0 * P_1 * n) buffer."""
        c = x.shape[1]
        make = np.empty if all(p == (0, 0) for p in self.pads) else np.zeros
        buf = make((c, math.prod(self.shape) * self.n), dtype=x.dtype)
        self._data(buf)[...] = x.transpose(1, 2, 3, 0)
        return buf

    def unload(self, buf: Array) -> Array:
        """A buffer of gradients -> (n, C, S_0, S_1) (a view)."""
        return self._data(buf).transpose(3, 0, 1, 2)

    def im2col(self, buf: Array) -> Array:
        """The buffer -> the (C, K, O_0 * O_1 * n) window matrix, one copy of a strided view."""
        c, n = buf.shape[0], self.n
        (k0, k1), (o0, o1) = self.kernel, self.out
        row = self.shape[1] * n  # one padded row of every sample
        size = buf.itemsize
        view = as_strided(
            buf,
            shape=(c, k0, k1, o0, o1 * n),
            strides=(
                buf.strides[0],
                self.dilation[0] * row * size,
                self.dilation[1] * n * size,
                row * size,
                size,
            ),
            writeable=False,
        )
        cols = np.empty((c, k0 * k1, o0 * o1 * n), dtype=buf.dtype)
        cols.reshape(c, k0, k1, o0, o1 * n)[...] = view
        return cols

    def col2im(self, dcols: Array) -> Array:
        """The adjoint of im2col: window gradients (C, K, M) summed into a buffer.

        Per column tap, its row taps are summed into a (C, P_0, O_1 * n) block first, each
        add one contiguous run per channel, and the block is added once at the tap's column
        offset. Adding each tap's (C, O_0, O_1 * n) block into the buffer directly, rows of
        P_1 * n apart, ran 2-3x slower (numpy's strided adds: 0.7 vs 0.3 ms for LeNet's conv2).
        """
        c, n = dcols.shape[0], self.n
        (k0, k1), (o0, o1), (d0, d1) = self.kernel, self.out, self.dilation
        width = o1 * n
        dbuf = np.zeros((c, self.shape[0], self.shape[1] * n), dtype=dcols.dtype)
        acc = np.empty((c, self.shape[0], width), dtype=dcols.dtype)
        blocks = dcols.reshape(c, k0, k1, o0, width)
        for t1 in range(k1):
            acc[:, :o0] = blocks[:, 0, t1]
            acc[:, o0:] = 0
            for t0 in range(1, k0):
                acc[:, t0 * d0 : t0 * d0 + o0] += blocks[:, t0, t1]
            dbuf[:, :, t1 * d1 * n : t1 * d1 * n + width] += acc
        return dbuf.reshape(c, -1)

    def valid(self, grid: Array) -> Array:
        """(F, M) -> an (F, n, O_0, O_1) view (every column is a real output)."""
        return grid.reshape(grid.shape[0], *self.out, self.n).transpose(0, 3, 1, 2)

    def scatter_output(self, dy: Array) -> Array:
        """(n, F, O_0, O_1) output gradient -> (F, M)."""
        f = dy.shape[1]
        grid = np.empty((f, *self.out, self.n), dtype=dy.dtype)
        grid[...] = dy.transpose(1, 2, 3, 0)
        return grid.reshape(f, -1)


@functools.cache
def minor_grid(
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    sizes: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    out: tuple[int, ...],
    n: int,
) -> MinorGrid:
    """The grid of one geometry and chunk size; cached, as Grid.of."""
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads, strict=True))
    return MinorGrid(sizes, pads, out, n, padded, 0, (), (), False, kernel, (), dilation)


def minor_chunks(
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    sizes: tuple[int, ...],
    pads: Sequence[tuple[int, int]],
    out: tuple[int, ...],
    n: int,
    row_bytes: int,
) -> list[tuple[int, int, Grid]]:
    """im2col.chunk_grids for this grid: [lo, hi) batch ranges, each window matrix about
    CHUNK_BYTES (at least one sample's); row_bytes is one column's C*K floats."""
    geometry = (kernel, dilation, sizes, tuple(pads), out)
    step = max(1, im2col.CHUNK_BYTES // max(math.prod(out) * row_bytes, 1))
    return [
        (lo, min(lo + step, n), minor_grid(*geometry, min(step, n - lo)))
        for lo in range(0, n, step)
    ]
