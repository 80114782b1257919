"""The NumPy functions that several ops, the losses and the metrics share, written once."""

from __future__ import annotations

import math

import numpy as np

from netspec.ops.base import Array


def sigmoid(x: Array) -> Array:
    """1 / (1 + e^-x) in x's dtype; exp(-|x|) <= 1, so neither side overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def log_softmax(x: Array, axis: int = -1) -> Array:
    """log(softmax(x)) along `axis`, shifted by the max so exp never overflows."""
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def softmax(x: Array, axis: int = -1) -> Array:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max so exp never overflows."""
    e = x - x.max(axis=axis, keepdims=True)
    np.exp(e, out=e)  # in place: one temporary, not three (attention's scores are N*H*T*T)
    e /= e.sum(axis=axis, keepdims=True)
    return e


# A minimax rational approximation of erf on [-4, 4] for float32 (Eigen's and XLA's fast erf):
# x * P(x^2) / Q(x^2); erf(4) is 1 to within 2e-8, so larger |x| are clamped.
_ERF_P = (
    -1.60960333262415e-02,
    -2.95459980854025e-03,
    -7.34990630326855e-04,
    -5.69250639462346e-05,
    -2.10102402082508e-06,
    2.77068142495902e-08,
    -2.72614225801306e-10,
)
_ERF_Q = (
    -1.42647390514189e-02,
    -7.37332916720468e-03,
    -1.68282697438203e-03,
    -2.13374055278905e-04,
    -1.45660718464996e-05,
)


def _erf_rational(x: Array) -> Array:
    """erf within 5e-7 (4 float32 ulps at 1; 6.5e-8 in exact arithmetic), in x's dtype as Eigen
    evaluates it: ~25 array passes where the series takes ~170, and float32 passes, half the
    memory traffic of float64 ones."""
    z = np.clip(x, -4.0, 4.0).astype(x.dtype, copy=False)
    z2 = z * z
    p = np.full_like(z, _ERF_P[-1])
    for c in reversed(_ERF_P[:-1]):
        p *= z2
        p += c
    q = np.full_like(z, _ERF_Q[-1])
    for c in reversed(_ERF_Q[:-1]):
        q *= z2
        q += c
    p *= z
    p /= q
    return p


def erf(x: Array) -> Array:
    """The error function, vectorised (NumPy has none): to float64 precision for float64
    arrays (gradient checks, the torch comparison), to float32's for the rest (training)."""
    return _erf_series(x) if x.dtype == np.float64 else _erf_rational(x)


def _erf_series(x: Array) -> Array:
    """erf within ~2e-15 of math.erf in float64.

    |x| < 2: erf(a) = 2/sqrt(pi) e^(-a^2) sum_n (2a^2)^n a / (2n+1)!!, all terms positive, so
    no cancellation; |x| >= 2: erfc's continued fraction, evaluated bottom-up.
    """
    a = np.abs(x)
    s = np.minimum(a, 2.0)
    term, total, two_s2 = s.copy(), s.copy(), 2 * s * s
    for n in range(1, 30):
        term = term * two_s2 / (2 * n + 1)
        total = total + term
    small = (2 / math.sqrt(math.pi)) * np.exp(-s * s) * total
    b = np.maximum(a, 2.0)
    frac = b.copy()
    for k in range(40, 0, -1):
        frac = b + (k / 2) / frac
    large = 1 - np.exp(-b * b) / (math.sqrt(math.pi) * frac)
    return np.sign(x) * np.where(a < 2.0, small, large)


# The rational erf above, rewritten for Phi(x) = 0.5 + 0.5 * erf(x / sqrt 2) in x itself: with
# u = x / sqrt 2, u^2 = x^2 / 2, so P's and Q's coefficients absorb the powers of 1/2 and P's the
# factor 0.5 / sqrt 2 too; no pass scales x, adds 1 or halves.
_CDF_P = tuple(c * 0.5**k * (0.5 / math.sqrt(2)) for k, c in enumerate(_ERF_P))
_CDF_Q = tuple(c * 0.5**k for k, c in enumerate(_ERF_Q))
_CDF_CLIP = 4 * math.sqrt(2)  # erf's clamp at u = +-4
_CDF_CHUNK = 1 << 16  # values per chunk: its 4 scratch arrays (1 MiB) stay in L2


def _horner(z2: Array, coeffs: tuple[float, ...], out: Array) -> Array:
    """sum_k coeffs[k] * z2^k into out, highest power first, in place."""
    np.multiply(z2, coeffs[-1], out=out)
    for c in reversed(coeffs[1:-1]):
        out += c
        out *= z2
    out += coeffs[0]
    return out


def normal_cdf(x: Array) -> Array:
    """The standard normal CDF in x's dtype: the float64 series for float64 arrays (gradient
    checks, the torch comparison); for float32 (training) the rational erf, 64K values at a
    time, so its ~25 passes run over cached scratch arrays instead of the whole tensor."""
    if x.dtype != np.float32:
        e = erf(x * (1 / math.sqrt(2)))
        e += 1
        e *= 0.5
        return e
    flat = x.reshape(-1)
    cdf = np.empty_like(flat)
    scratch = np.empty((3, min(_CDF_CHUNK, flat.size)), dtype=x.dtype)
    for start in range(0, flat.size, _CDF_CHUNK):
        xc, out = flat[start : start + _CDF_CHUNK], cdf[start : start + _CDF_CHUNK]
        z, z2, q = scratch[:, : xc.size]
        np.clip(xc, -_CDF_CLIP, _CDF_CLIP, out=z)
        np.multiply(z, z, out=z2)
        _horner(z2, _CDF_P, out)
        out *= z
        out /= _horner(z2, _CDF_Q, q)
        out += 0.5
    return cdf.reshape(x.shape)
