"""Weight penalties and gradient clipping on NumPy gradients.

- `l1` and `l2` add ``l1 * sum|w| + l2 * sum w^2`` (Keras's convention) over weights only: the
  arrays called `weight*` of layers that are not normalisation layers
  (`training.plan.penalised_names`), never biases, batchnorm scales or running statistics;
- `clip_norm` rescales the gradient so its global L2 norm (over every trainable array) is at
  most that value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from netspec.ops.base import Params


def add_penalty(params: Params, grads: Params, names: Sequence[str], l1: float, l2: float) -> float:
    """The penalty's value; its gradient is added to `grads` (new arrays, never in place)."""
    total = 0.0
    for name in names:
        w = params[name]
        if l1:
            total += l1 * float(np.abs(w).sum())
            grads[name] = grads[name] + l1 * np.sign(w)
        if l2:
            total += l2 * float((w * w).sum())
            grads[name] = grads[name] + 2 * l2 * w
    return total


def clip(grads: Params, max_norm: float) -> None:
    """Scale every gradient by one factor so their global L2 norm is at most `max_norm`."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for name in grads:
            grads[name] = grads[name] * np.asarray(scale, dtype=grads[name].dtype)
