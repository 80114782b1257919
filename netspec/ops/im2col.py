"""im2col: convolution as GEMM over a window matrix, the NumPy engine of conv1d and conv2d.

Per chunk of the batch, the input is copied into a zero-padded channels-major buffer, one slice
per kernel tap is copied into a (C*K, M) window matrix, and one 2-D GEMM per group does the
rest. On stride-1 grids with enough channels (row_path) only the last kernel axis's taps are
copied (Grid.rows) and each leading tap is a GEMM over a shifted view of that row matrix.
`Grid` is the layout of one chunk, `chunk_grids` cuts a batch into chunks, `correlate` is the
whole forward pass (and, for stride 1, the input gradient as a correlation). The op classes,
their shape rules and their backward pass are in conv.py.
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
# The row path's GEMMs reduce over C/G * K_last only: below this they run too far from peak.
ROW_PATH_MIN = 32


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

    @property
    def kernel_last(self) -> int:
        """Taps along the last kernel axis (the exact grid's from its tap slices)."""
        if self.wide:
            return self.kernel[-1]
        return len({region[-1].start for region in self.taps})

    @property
    def shifts(self) -> tuple[int, ...]:
        """Wide: each leading-axis tap's offset (C order), one GEMM each over the row matrix."""
        lead = itertools.product(*(range(k) for k in self.kernel[:-1]))
        return tuple(sum(t * s for t, s in zip(o, self.tap_steps, strict=False)) for o in lead)

    @property
    def span(self) -> int:
        """Wide: columns of the row matrix (M plus the largest shift)."""
        return self.columns + max(self.shifts)

    def rows(self, buf: Array) -> Array:
        """Wide: the buffer -> the (C, K_last, M + max shift) row matrix.

        Only the last kernel axis's taps are copied; tap (t, j) of the window matrix is then the
        row matrix's (C*K_last, M) view at column offset shifts[t], which BLAS reads in place
        (a 2-D view with a row stride). K / K_last times less copying than im2col (3x3: 3x,
        5x5: 5x), for one GEMM per leading tap instead of one.
        """
        c, kw, span = buf.shape[0], self.kernel[-1], self.span
        size = buf.itemsize
        rows = np.empty((c, kw, span), dtype=buf.dtype)
        rows[...] = as_strided(
            buf,
            shape=(c, kw, span),
            strides=(buf.strides[0], self.tap_steps[-1] * size, size),
            writeable=False,
        )
        return rows

    def rows_adjoint(self, drows: Array) -> Array:
        """The adjoint of `rows`: (C, K_last, span) gradients summed into a buffer."""
        c, _, span = drows.shape
        dbuf = np.zeros((c, math.prod(self.shape) + self.slack), dtype=drows.dtype)
        step = self.tap_steps[-1]
        for j in range(self.kernel[-1]):
            dbuf[:, j * step : j * step + span] += drows[:, j]
        return dbuf

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


def lead_weights(w: Array, groups: int) -> Array:
    """(F, C/G, *K) -> (S, G, F/G, C/G*K_last), S = prod(K[:-1]): the row path's weights, one
    matrix per leading tap (Grid.shifts' order) whose columns match the row matrix's rows."""
    f, cg, *k = w.shape
    lead = tuple(range(3, 2 + len(k)))
    w5 = np.moveaxis(w.reshape(groups, f // groups, cg, *k), lead, tuple(range(len(lead))))
    return np.ascontiguousarray(w5).reshape(-1, groups, f // groups, cg * k[-1])


def unlead(wl: Array, shape: tuple[int, ...]) -> Array:
    """The inverse of lead_weights: (S, G, F/G, C/G*K_last) -> (F, C/G, *K)."""
    _, g, fg, _ = wl.shape
    k = shape[2:]
    w5 = wl.reshape(*k[:-1], g, fg, shape[1], k[-1])
    lead = tuple(range(len(k) - 1))
    return np.moveaxis(w5, lead, tuple(range(3, 2 + len(k)))).reshape(shape)


def row_path(chunks: Sequence[tuple[int, int, Grid]], channels: int) -> bool:
    """Whether to take the row matrix (wide grids with channels * K_last >= ROW_PATH_MIN)."""
    if not chunks or not chunks[0][2].wide:
        return False
    return channels * chunks[0][2].kernel[-1] >= ROW_PATH_MIN


def conv_weights(w: Array, groups: int, rows: bool) -> Array:
    """w (F, C/G, *K) as grid_products and the backward take it: lead_weights on the row path."""
    return lead_weights(w, groups) if rows else w.reshape(groups, w.shape[0] // groups, -1)


def windows_of(grid: Grid, buf: Array, rows: bool) -> Array:
    """A chunk's loaded buffer -> its row matrix (row path) or window matrix."""
    return grid.rows(buf) if rows else grid.im2col(buf)


def grid_products(grid: Grid, mat: Array, w: Array) -> list[Array]:
    """Per group, the (F/G, M) products of the weights with the chunk's windows.

    mat and w: windows_of's row matrix (C, K_last, span) and lead_weights' (S, G, F/G,
    C/G*K_last) on the row path, else the window matrix (C, K, M) and (G, F/G, C/G*K). The row
    path sums S shifted GEMMs (an add of the small (F/G, M) result per shift is far cheaper
    than copying the K-times larger window matrix).
    """
    m = grid.columns
    if w.ndim == 3:
        cols = mat.reshape(w.shape[0], w.shape[2], m)
        return [w[i] @ cols[i] for i in range(w.shape[0])]
    s, g, _, rows_g = w.shape
    rows = mat.reshape(g, rows_g, grid.span)
    out = []
    for i in range(g):
        yi = w[0, i] @ rows[i, :, :m]
        for t in range(1, s):
            off = grid.shifts[t]
            yi += w[t, i] @ rows[i, :, off : off + m]
        out.append(yi)
    return out


def exact_grads(
    grid: Grid, mat: Array, wg: Array, dyc: Array, dwt: Array, col2im: bool
) -> Array | None:
    """One chunk's backward from its window matrix (C, K, M): dW^T (G, C/G*K, F/G) += cols
    dy^T, and with col2im the input gradient's buffer from (W^T dy) (None without)."""
    g, m = wg.shape[0], grid.columns
    cols = mat.reshape(g, -1, m)  # (G, C/G*K, M)
    for i in range(g):
        # OpenBLAS runs the long M reduction far faster with the tall operand first than as
        # dy cols^T.
        dwt[i] += cols[i] @ dyc[i].T
    if not col2im:
        return None
    dcols = np.empty_like(cols)  # (G, C/G*K, M) = (C, K, M)
    for i in range(g):
        np.matmul(wg[i].T, dyc[i], out=dcols[i])
    return grid.col2im(dcols.reshape(mat.shape[0], -1, m))


def row_grads(
    grid: Grid, mat: Array, wl: Array, dyc: Array, dwt: Array, col2im: bool
) -> Array | None:
    """exact_grads from the row matrix (C, K_last, span): dW^T (S, G, C/G*K_last, F/G) gets one
    GEMM per leading tap, and the row matrix's gradient sums W_t^T dy at each tap's shift."""
    g = wl.shape[1]
    m, span = grid.columns, grid.span
    rows = mat.reshape(g, -1, span)  # (G, C/G*K_last, span)
    for t, off in enumerate(grid.shifts):
        for i in range(g):
            dwt[t, i] += rows[i, :, off : off + m] @ dyc[i].T
    if not col2im:
        return None
    drows = np.zeros_like(rows)
    for t, off in enumerate(grid.shifts):
        for i in range(g):
            drows[i, :, off : off + m] += wl[t, i].T @ dyc[i]
    return grid.rows_adjoint(drows.reshape(mat.shape[0], -1, span))


def correlate(
    x: Array,
    w: Array,
    groups: int,
    chunks: Sequence[tuple[int, int, Grid]],
    out: Array,
    keep: bool,
    bias: Array | None = None,
) -> list[Array]:
    """out (N, F, *O) = x's windows (N, C, *S) correlated with weights w (F, C/G, *K) + bias.

    Per chunk of the batch: load, then the GEMMs of grid_products, whose valid columns are
    copied into the batch-first output. The bias (F,) is added to the GEMM's result while it
    is contiguous and in cache (a pass over the strided output after the copy cost 3-10% of
    LeNet's and the CIFAR CNN's conv forward). With keep, returns the forward's cache per
    chunk: the row matrix on the row path, and the window matrix where it is no more than
    K_last times the loaded buffer (a stride-2 3x3 conv's: 2.25x), for backward's dW GEMMs to
    read as they are; else the loaded buffer (a stride-1 window matrix is about K times
    larger). Without keep each is freed with its chunk.
    """
    fg = w.shape[0] // groups
    bg = None if bias is None else bias.reshape(groups, fg, 1)
    rows = row_path(chunks, w.shape[1])
    weights = conv_weights(w, groups, rows)
    kept = []
    for lo, hi, grid in chunks:
        buf = grid.load(x[lo:hi])
        mat = windows_of(grid, buf, rows)
        for i, yi in enumerate(grid_products(grid, mat, weights)):
            if bg is not None:
                yi += bg[i]
            out[lo:hi, i * fg : (i + 1) * fg] = np.moveaxis(grid.valid(yi), 0, 1)
        if keep:
            kept.append(mat if rows or mat.size <= grid.kernel_last * buf.size else buf)
    return kept
