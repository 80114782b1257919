"""The NumPy functions that several ops, the losses and the metrics share, written once."""

from __future__ import annotations

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
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)  # type: ignore[no-any-return]
