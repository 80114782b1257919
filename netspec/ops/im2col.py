"""im2col: convolution as GEMM over a window matrix, the NumPy engine of conv1d and conv2d.

Per chunk of the batch, the input is copied into a zero-padded channels-major buffer, one slice
per kernel tap is copied into a (C*K, M) window matrix, and one 2-D GEMM per group does the
rest. `Grid` is the layout of one chunk, `chunk_grids` cuts a batch into chunks, `correlate` is
the whole forward pass (and, for stride 1, the input gradient as a correlation). The op
classes, their shape rules and their backward pass are in conv.py.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from netspec.ops.base import Array
from netspec.ops.window import Pads, tap_regions

# The window matrix (and its gradient) is built and consumed per chunk of the batch of about
# this many bytes: it stays in L3 between its copy and its GEMM, and peak memory stays near the
# activations' instead of K times the input (measured: 4 MiB was as fast as or faster than the
# whole batch at once, and cut the CIFAR CNN's peak training memory from 5.8x to 1.7x budget).
# With the samples side by side, bigger chunks also share more padding: 4 MiB is 4-7% faster
# than 2 MiB on LeNet's and the CIFAR CNN's convs, and no slower on ResNet-20's.
CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class Grid:
    """The im2col layout of one chunk of a batch: which positions the window matrix covers.

    Stride 1 ("wide"): the chunk's n samples are loaded side by side along the last spatial
    axis of one zero-padded, channels-major buffer (C, prod(B) + slack), B = (P_0, ..., R),
    neighbours sharing the zero padding between them (a sample's pitch along that axis is
    S + max(lo, hi), not S + lo + hi). The window matrix has a column for every buffer
    position of the first O_0 rows (M = O_0 * B_1 * ...), so each kernel tap is one contiguous
    shifted slice of the buffer: im2col is one copy and col2im one add per (channel, tap) for
    the whole chunk. Columns that fall between samples are computed and dropped; in backward
    their output gradient is zero, so they add nothing to dW or dx. The price is GEMMs wider by
    pitch / O_last (CIFAR's 8x8 maps with padding 2: 1.25x; per-sample rows would be 1.5x).

    Other strides ("exact"): a (C, n, prod(P)) buffer and one strided slice per tap; M = n * O.
    """

    sizes: tuple[int, ...]  # S: the input's spatial sizes
    pads: tuple[tuple[int, int], ...]  # (before, after) per spatial axis
    out: tuple[int, ...]  # O: the output's spatial sizes
    n: int  # samples in the chunk
    shape: tuple[int, ...]  # the buffer's spatial shape: B (wide) or the padded P (exact)
    pitch: int  # wide: each sample's span along the last axis of B
    taps: tuple[tuple[slice, ...], ...]  # exact: each tap's strided slice of the padded input
    offsets: tuple[int, ...]  # wide: each tap's offset in the flattened buffer
    wide: bool
    kernel: tuple[int, ...] = ()  # wide: taps per spatial axis
    tap_steps: tuple[int, ...] = ()  # wide: the offset between neighbouring taps, per axis

    @classmethod
    @functools.cache
    def of(
        cls,
        kernel: tuple[int, ...],
        stride: tuple[int, ...],
        dilation: tuple[int, ...],
        sizes: tuple[int, ...],
        pads: tuple[tuple[int, int], ...],
        out: tuple[int, ...],
        n: int,
    ) -> Grid:
        """The grid of one geometry and chunk size; cached, as every step asks for the same few."""
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(sizes, pads, strict=True))
        if not all(v == 1 for v in stride):
            taps = tuple(tap_regions(kernel, stride, dilation, out))
            return cls(sizes, pads, out, n, padded, 0, taps, (), False)
        (lo, hi), last = pads[-1], sizes[-1]
        # Far enough apart that a sample's windows see only its own data and zeros, and that
        # no two samples' outputs share a column.
        pitch = max(last + max(lo, hi), out[-1])
        row = n * pitch + max(0, lo + last + hi - pitch)  # the last sample's right padding
        shape = (*padded[:-1], row)
        steps = [math.prod(shape[i + 1 :]) for i in range(len(shape))]  # C-order strides
        tap_steps = tuple(d * st for d, st in zip(dilation, steps, strict=True))
        offsets = tuple(
            sum(t * ts for t, ts in zip(offset, tap_steps, strict=True))
            for offset in itertools.product(*(range(k) for k in kernel))
        )
        return cls(sizes, pads, out, n, shape, pitch, (), offsets, True, kernel, tap_steps)

    @property
    def columns(self) -> int:
        """Window-matrix columns of the whole chunk (M)."""
        if not self.wide:
            return self.n * math.prod(self.out)
        if len(self.out) == 1:
            return self.n * self.pitch
        return self.out[0] * math.prod(self.shape[1:])

    @property
    def slack(self) -> int:
        """Floats past the buffer that the last wide tap reads (all zero)."""
        if not self.wide:
            return 0
        return max(0, max(self.offsets) + self.columns - math.prod(self.shape))

    def _data(self, buf: Array) -> Array:
        """The input's positions in a buffer: a (C, n, *S) view (wide: strided, in place)."""
        c = buf.shape[0]
        inner = tuple(slice(lo, lo + s) for (lo, _), s in zip(self.pads, self.sizes, strict=True))
        if not self.wide:
            return buf.reshape(c, self.n, *self.shape)[(slice(None), slice(None), *inner)]
        full = buf[:, : math.prod(self.shape)].reshape(c, *self.shape)
        lanes = full[..., : self.n * self.pitch].reshape(c, *self.shape[:-1], self.n, self.pitch)
        data = lanes[(slice(None), *inner[:-1], slice(None), inner[-1])]  # (C, *S[:-1], n, S_last)
        return np.moveaxis(data, -2, 1)

    def load(self, x: Array) -> Array:
        """(n, C, *S) -> the zero-padded buffer the window matrix is cut from."""
        c = x.shape[1]
        if self.wide:
            buf = np.zeros((c, math.prod(self.shape) + self.slack), dtype=x.dtype)
        else:
            buf = np.zeros((c, self.n * math.prod(self.shape)), dtype=x.dtype)
        self._data(buf)[...] = np.moveaxis(x, 1, 0)
        return buf

    def unload(self, buf: Array) -> Array:
        """The adjoint of load's placement: a buffer of gradients -> (n, C, *S) (a view)."""
        return np.moveaxis(self._data(buf), 0, 1)

    def im2col(self, buf: Array) -> Array:
        """The buffer -> the (C, K, M) window matrix.

        Wide: one copy from a (C, *kernel, M) view whose tap axes step through the buffer
        (rows of taps overlap: the view only reads); a copy per tap cost 10-20 us more per
        chunk in call overhead. Exact: one strided copy per tap.
        """
        c, m = buf.shape[0], self.columns
        if self.wide:
            cols = np.empty((c, len(self.offsets), m), dtype=buf.dtype)
            size = buf.itemsize
            taps = as_strided(
                buf,
                shape=(c, *self.kernel, m),
                strides=(buf.strides[0], *(t * size for t in self.tap_steps), size),
                writeable=False,
            )
            cols.reshape(c, *self.kernel, m)[...] = taps
            return cols
        cols = np.empty((c, len(self.taps), m), dtype=buf.dtype)
        xc = buf.reshape(c, self.n, *self.shape)
        for k, region in enumerate(self.taps):
            cols[:, k] = xc[(slice(None), slice(None), *region)].reshape(c, m)
        return cols

    def col2im(self, dcols: Array) -> Array:
        """The adjoint of im2col: (C, K, M) window gradients summed into a buffer (unload it).

        One add per tap: within a tap the buffer positions are distinct, so `+=` on the slice
        never loses a contribution.
        """
        c, _, m = dcols.shape
        if self.wide:
            dbuf = np.zeros((c, math.prod(self.shape) + self.slack), dtype=dcols.dtype)
            for k, off in enumerate(self.offsets):
                dbuf[:, off : off + m] += dcols[:, k]
            return dbuf
        dbuf = np.zeros((c, self.n * math.prod(self.shape)), dtype=dcols.dtype)
        dxc = dbuf.reshape(c, self.n, *self.shape)
        for k, region in enumerate(self.taps):
            dxc[(slice(None), slice(None), *region)] += dcols[:, k].reshape(c, self.n, *self.out)
        return dbuf

    def valid(self, grid: Array) -> Array:
        """(F, M) on the grid -> an (F, n, *O) view of the real output positions."""
        f = grid.shape[0]
        if not self.wide:
            return grid.reshape(f, self.n, *self.out)
        rows = (self.out[0], *self.shape[1:]) if len(self.out) > 1 else (self.n * self.pitch,)
        lanes = grid.reshape(f, *rows)[..., : self.n * self.pitch]
        lanes = lanes.reshape(f, *rows[:-1], self.n, self.pitch)
        inner = tuple(slice(0, o) for o in self.out)
        return np.moveaxis(lanes[(slice(None), *inner[:-1], slice(None), inner[-1])], -2, 1)

    def scatter_output(self, dy: Array) -> Array:
        """(n, F, *O) output gradient -> (F, M) on the grid, zero on the extra columns."""
        f = dy.shape[1]
        grid = (np.zeros if self.wide else np.empty)((f, self.columns), dtype=dy.dtype)
        self.valid(grid)[...] = np.moveaxis(dy, 1, 0)
        return grid


def chunk_grids(
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    sizes: tuple[int, ...],
    pads: Pads,
    out: tuple[int, ...],
    n: int,
    row_bytes: int,
) -> list[tuple[int, int, Grid]]:
    """[lo, hi) ranges over the batch with their grids, each window matrix ~CHUNK_BYTES.

    row_bytes: the bytes of one window-matrix column (C*K floats).
    """
    geometry = (kernel, stride, dilation, sizes, tuple(pads), out)
    per_sample = Grid.of(*geometry, 1).columns * row_bytes
    step = max(1, CHUNK_BYTES // max(per_sample, 1))
    return [
        (lo, min(lo + step, n), Grid.of(*geometry, min(step, n - lo))) for lo in range(0, n, step)
    ]


def correlate(
    x: Array,
    wg: Array,
    chunks: Sequence[tuple[int, int, Grid]],
    out: Array,
    keep: bool,
    bias: Array | None = None,
) -> list[Array]:
    """out (N, G*F/G, *O) = x's windows (N, C, *S) times weights wg (G, F/G, C/G*K) + bias.

    Per chunk of the batch: load, im2col, then one (F/G, C/G*K) @ (C/G*K, M) GEMM per group,
    whose valid columns are copied into the batch-first output. The bias (G*F/G,) is added to
    the GEMM's result while it is contiguous and in cache (a pass over the strided output
    after the copy cost 3-10% of LeNet's and the CIFAR CNN's conv forward). With keep, returns
    the loaded buffers (the forward's cache); else each is freed with its chunk.
    """
    g, fg, rows = wg.shape
    bg = None if bias is None else bias.reshape(g, fg, 1)
    bufs = []
    for lo, hi, grid in chunks:
        buf = grid.load(x[lo:hi])
        cols = grid.im2col(buf).reshape(g, rows, grid.columns)
        for i in range(g):
            yi = wg[i] @ cols[i]  # (F/G, M)
            if bg is not None:
                yi += bg[i]
            out[lo:hi, i * fg : (i + 1) * fg] = np.moveaxis(grid.valid(yi), 0, 1)
        if keep:
            bufs.append(buf)
    return bufs
