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
