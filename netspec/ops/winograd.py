"""Winograd F(2x2, 3x3) (Lavin & Gray, 2015): a stride-1 3x3 correlation in 2.25x fewer products.

Each 4x4 input tile d (stride 2) becomes V = B^T d B, each 3x3 kernel U = G g G^T, the 16
positions of a tile multiply as one batched GEMM (16, tiles, C) @ (16, C, F), and each 4x4
product tile m gives a 2x2 output tile A^T m A. The transforms are explicit adds and
subtractions into preallocated buffers (a matrix product per tile would be 16 tiny GEMMs).
conv.py uses it for the forward pass and, as a correlation of the padded output gradient with
the flipped kernel, for the input gradient; `applies` is the rule for when it beats im2col (so
far: never, see ENABLED).
"""

from __future__ import annotations

import numpy as np

from netspec.ops.base import Array

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # (4, 3)

# Off: measured by benchmarks/winograd.py (interleaved, 1 thread; the table is in
# benchmarks/README.md, "Round 4"). The tiles-as-rows layout below made Winograd 1.1-1.6x
# faster than the first, channels-first version, and it now wins forward + backward on
# 128-512 channels over 14x14-16x16 maps (0.81-0.97x im2col's time), but loses at ResNet-20's
# 16-64 channels (1.0-2.9x), on 32x32 maps below 256 channels (1.2-1.5x: its input transform
# runs ~3x slower per float than on 16x16 maps) and on 7x7-8x8 maps (1.1-1.3x: too few tiles for
# the batched GEMM). That window is narrow, and to win there the batched GEMM needs its
# MIN_TILES rows at once, a transient of ~16 times the chunk's input that conv's workspace
# estimate (`--max-memory`) does not count: turning it on for those layers needs the estimate
# to say so first. The path stays, tested; `ENABLED` is what the tests switch on.
ENABLED = False
# The window where it measured faster: channels and filters, and the output map's pixels.
MIN_CHANNELS = 128
MIN_PIXELS = 14 * 14
MAX_PIXELS = 16 * 16
# correlate's batch chunks: the transformed input's bytes, and the fewest tiles (GEMM rows).
CHUNK_BYTES = 1 << 22
MIN_TILES = 2048


def applies(
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
    pads: tuple[tuple[int, int], ...],
    channels: int,
    filters: int,
    out: tuple[int, ...],
) -> bool:
    """Whether a correlation of this geometry runs through Winograd rather than im2col."""
    return (
        ENABLED
        and kernel == (3, 3)
        and stride == (1, 1)
        and dilation == (1, 1)
        and groups == 1
        and all(0 <= v <= 2 for side in pads for v in side)
        and min(channels, filters) >= MIN_CHANNELS
        and MIN_PIXELS <= out[0] * out[1] <= MAX_PIXELS
    )


def kernel_transform(w: Array) -> Array:
    """(F, C, 3, 3) -> U = G w G^T as (16, C, F), in w's dtype: the right operand of the
    batched GEMM, whose rows are the tiles."""
    g = G.astype(w.dtype)
    u = np.einsum("ai,fcij,bj->abcf", g, w, g, optimize=True)
    return np.ascontiguousarray(u.reshape(16, w.shape[1], w.shape[0]))


def _input_transform(x: Array, pads: tuple[tuple[int, int], ...], th: int, tw: int) -> Array:
    """(N, C, H, W) -> V = B^T d B of every tile, as (16, th*tw*N, C).

    The input is first copied once into a zero-padded (rows, columns, N, C) buffer: every tap
    view below then strides only over the two spatial axes and reads whole (N, C) planes, so
    each ufunc runs one long inner loop (the channels-first layout's inner loop was a tile row,
    4-16 floats, and ran 2-5x slower per float at ResNet-20's sizes).
    """
    n, c, h, wd = x.shape
    (top, _), (left, _) = pads
    d = np.zeros((2 * th + 2, 2 * tw + 2, n, c), dtype=x.dtype)
    rows, cols = min(h, 2 * th + 2 - top), min(wd, 2 * tw + 2 - left)
    d[top : top + rows, left : left + cols] = x[:, :, :rows, :cols].transpose(2, 3, 0, 1)
    r = [d[i : i + 2 * th : 2] for i in range(4)]  # row i of every tile: (th, columns, N, C)
    rt = np.empty((4, *r[0].shape), dtype=x.dtype)  # B^T d: the rows combined
    np.subtract(r[0], r[2], out=rt[0])
    np.add(r[1], r[2], out=rt[1])
    np.subtract(r[2], r[1], out=rt[2])
    np.subtract(r[1], r[3], out=rt[3])
    v = np.empty((4, 4, th, tw, n, c), dtype=x.dtype)
    for i in range(4):
        q = [rt[i][:, j : j + 2 * tw : 2] for j in range(4)]  # column j: (th, tw, N, C)
        np.subtract(q[0], q[2], out=v[i, 0])
        np.add(q[1], q[2], out=v[i, 1])
        np.subtract(q[2], q[1], out=v[i, 2])
        np.subtract(q[1], q[3], out=v[i, 3])
    return v.reshape(16, th * tw * n, c)


def _output_transform(m: Array, n: int, th: int, tw: int) -> Array:
    """(16, th*tw*N, F) products -> A^T m A as (2*th, 2*tw, N, F), tiles in place."""
    f = m.shape[-1]
    m = m.reshape(4, 4, th, tw, n, f)
    s = np.empty((2, 4, th, tw, n, f), dtype=m.dtype)  # A^T m: rows combined
    np.add(m[0], m[1], out=s[0])
    s[0] += m[2]
    np.subtract(m[1], m[2], out=s[1])
    s[1] -= m[3]
    # Output (u, v) of tile (i, j) is pixel (2i + u, 2j + v): written straight into place.
    t = np.empty((th, 2, tw, 2, n, f), dtype=m.dtype)
    for u in range(2):
        np.add(s[u, 0], s[u, 1], out=t[:, u, :, 0])
        t[:, u, :, 0] += s[u, 2]
        np.subtract(s[u, 1], s[u, 2], out=t[:, u, :, 1])
        t[:, u, :, 1] -= s[u, 3]
    return t.reshape(2 * th, 2 * tw, n, f)


def correlate(
    x: Array, w: Array, pads: tuple[tuple[int, int], ...], bias: Array | None = None
) -> Array:
    """y = x (*) w, stride 1, for (N, C, H, W) x and (F, C, 3, 3) w; pads ((top, bottom), (left,
    right)). Equal to im2col's correlation up to float rounding.

    Per chunk of the batch whose transformed input V is about CHUNK_BYTES, but never fewer than
    MIN_TILES tiles: the ~25 transform passes then run in cache (a whole batch of 32x32 maps at
    once was 1.1-1.15x slower forward), and the batched GEMM keeps enough rows to run near its
    rate (chunks of 4 samples at 256 channels on 16x16 maps were 1.5x slower).
    """
    n, c, h, wd = x.shape
    (top, bottom), (left, right) = pads
    oh, ow = h + top + bottom - 2, wd + left + right - 2
    th, tw = -(-oh // 2), -(-ow // 2)
    u = kernel_transform(w)  # (16, C, F)
    y = np.empty((n, w.shape[0], oh, ow), dtype=x.dtype)
    step = max(CHUNK_BYTES // (16 * th * tw * c * x.itemsize), -(-MIN_TILES // (th * tw)), 1)
    for lo in range(0, n, step):
        xc = x[lo : lo + step]
        v = _input_transform(xc, pads, th, tw)  # (16, P, C)
        # The 16 products as one batched GEMM, tiles as rows: (P, C) @ (C, F) runs 4-5x
        # faster in OpenBLAS than the (F, C) @ (C, P) orientation when C and F are 16-64.
        m = np.matmul(v, u)  # (16, P, F)
        t = _output_transform(m, len(xc), th, tw)[:oh, :ow]  # (OH, OW, n, F)
        y[lo : lo + step].transpose(2, 3, 0, 1)[...] = t  # one copy back to channels first
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y
