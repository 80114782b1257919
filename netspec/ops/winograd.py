"""Winograd F(2x2, 3x3) (Lavin & Gray, 2015): a stride-1 3x3 correlation in 2.25x fewer products.

Each 4x4 input tile d (stride 2) becomes V = B^T d B, each 3x3 kernel U = G g G^T, the 16
positions of a tile multiply as one batched GEMM (16, F, C) @ (16, C, tiles), and each 4x4 product
tile m gives a 2x2 output tile A^T m A. The transforms are explicit adds and subtractions into
preallocated buffers (a matrix product per tile would be 16 tiny GEMMs). conv.py uses it for the
forward pass and, as a correlation of the padded output gradient with the flipped kernel, for
the input gradient; `applies` is the rule for when it beats im2col (so far: never, see ENABLED).
"""

from __future__ import annotations

import numpy as np

from netspec.ops.base import Array

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # (4, 3)

# Off: measured on a quiet machine (benchmarks/README.md, "Winograd"), interleaved, 1 thread,
# batch 32, Winograd lost to im2col on every ResNet-20 layer (forward 1.5-2.4x, forward +
# backward 1.3-1.9x slower at 16/32/64 channels on 32/16/8 maps) and the ResNet-20 b32 step
# was 1.30x slower with it: the transforms' ~12 NumPy passes over a 4x-input buffer cost more
# than the 2.25x fewer products save on GEMMs this thin. The path stays, tested, for a rule
# that a future measurement justifies; `ENABLED` is what the tests switch on.
ENABLED = False
# Where it came closest (16 and more channels, 32x32 and larger maps).
MIN_CHANNELS = 16
MIN_PIXELS = 32 * 32


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
        and out[0] * out[1] >= MIN_PIXELS
    )


def kernel_transform(w: Array) -> Array:
    """(F, C, 3, 3) -> U = G w G^T as (16, F, C), in w's dtype."""
    g = G.astype(w.dtype)
    u = np.einsum("ai,fcij,bj->abfc", g, w, g, optimize=True)
    return np.ascontiguousarray(u.reshape(16, *w.shape[:2]))


def _input_transform(x: Array, pads: tuple[tuple[int, int], ...], th: int, tw: int) -> Array:
    """(N, C, H, W) -> V = B^T d B of every tile, as (16, C, N*th*tw)."""
    n, c, h = x.shape[:3]
    (top, _), (left, _) = pads
    # Channels-major, zero-padded to whole tiles (2*t + 2 rows and columns), with the even and
    # odd columns apart, (C, N, rows, parity, t + 1): every tap's view below then reads whole
    # unit-stride rows (stride-2 reads in the ufuncs' inner loop ran ~2x slower).
    buf = np.zeros((c, n, 2 * th + 2, 2, tw + 1), dtype=x.dtype)
    rows = min(h, 2 * th + 2 - top)
    xt = x[:, :, :rows].transpose(1, 0, 2, 3)  # (C, N, rows, W)
    for parity in range(2):
        first = (parity - left) % 2  # x's first column landing on this parity
        src = xt[..., first::2]
        start = (first + left) // 2
        width = min(src.shape[-1], tw + 1 - start)
        buf[:, :, top : top + rows, parity, start : start + width] = src[..., :width]
    r = [buf[:, :, i : i + 2 * th : 2] for i in range(4)]  # row i of every tile
    rt = np.empty((4, *r[0].shape), dtype=x.dtype)  # B^T d: the rows combined
    np.subtract(r[0], r[2], out=rt[0])
    np.add(r[1], r[2], out=rt[1])
    np.subtract(r[2], r[1], out=rt[2])
    np.subtract(r[1], r[3], out=rt[3])
    v = np.empty((4, 4, c, n, th, tw), dtype=x.dtype)
    for i in range(4):
        # Column j of every tile: even/odd columns, shifted by one tile for j >= 2.
        q = [rt[i][..., j % 2, j // 2 : j // 2 + tw] for j in range(4)]  # (C, N, th, tw)
        np.subtract(q[0], q[2], out=v[i, 0])
        np.add(q[1], q[2], out=v[i, 1])
        np.subtract(q[2], q[1], out=v[i, 2])
        np.subtract(q[1], q[3], out=v[i, 3])
    return v.reshape(16, c, n * th * tw)


def _output_transform(m: Array, n: int, th: int, tw: int) -> Array:
    """(16, F, N*th*tw) products -> A^T m A as (N, F, 2*th, 2*tw)."""
    f = m.shape[1]
    m = m.reshape(4, 4, f, n, th, tw)
    s = np.empty((2, 4, f, n, th, tw), dtype=m.dtype)  # A^T m: rows combined
    np.add(m[0], m[1], out=s[0])
    s[0] += m[2]
    np.subtract(m[1], m[2], out=s[1])
    s[1] -= m[3]
    t = np.empty((2, 2, f, n, th, tw), dtype=m.dtype)  # output (u, v) of every tile
    for u in range(2):
        np.add(s[u, 0], s[u, 1], out=t[u, 0])
        t[u, 0] += s[u, 2]
        np.subtract(s[u, 1], s[u, 2], out=t[u, 1])
        t[u, 1] -= s[u, 3]
    y = np.empty((n, f, 2 * th, 2 * tw), dtype=m.dtype)
    # One interleaving copy: y[n, f, 2i + u, 2j + v] = t[u, v, f, n, i, j].
    y.reshape(n, f, th, 2, tw, 2)[...] = t.transpose(3, 2, 4, 0, 5, 1)
    return y


def correlate(
    x: Array, w: Array, pads: tuple[tuple[int, int], ...], bias: Array | None = None
) -> Array:
    """y = x (*) w, stride 1, for (N, C, H, W) x and (F, C, 3, 3) w; pads ((top, bottom), (left,
    right)). Equal to im2col's correlation up to float rounding."""
    n, _, h, wd = x.shape
    (top, bottom), (left, right) = pads
    oh, ow = h + top + bottom - 2, wd + left + right - 2
    th, tw = -(-oh // 2), -(-ow // 2)
    v = _input_transform(x, pads, th, tw)  # (16, C, P)
    m = np.matmul(kernel_transform(w), v)  # (16, F, P): the 16 products as one batched GEMM
    y = _output_transform(m, n, th, tw)
    if (2 * th, 2 * tw) != (oh, ow):
        y = np.ascontiguousarray(y[:, :, :oh, :ow])
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y
