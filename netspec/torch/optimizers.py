"""The torch engine's optimizers: the shared formulas (netspec/training/optimizers.py) on
tensors, so the two engines take the same steps; state is saved as NumPy arrays under the
recipe's slot names, so a checkpoint of either engine resumes on the other."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from netspec import recipe
from netspec.ops.base import Array
from netspec.training.optimizers import Optimizer
from netspec.training.optimizers import make_optimizer as make_shared


class TorchArrays:
    """Tensors: a slot loaded from a checkpoint is made on its parameter's device, in its dtype."""

    def zeros_like(self, w: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(w)

    def sqrt(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)

    def to_numpy(self, x: torch.Tensor) -> Array:
        return x.detach().cpu().numpy().copy()

    def from_numpy(self, value: Array, like: Any | None) -> torch.Tensor:
        if like is None:
            return torch.tensor(np.asarray(value))
        return torch.tensor(np.asarray(value), dtype=like.dtype, device=like.device)


TORCH = TorchArrays()


def make_optimizer(spec: recipe.Optimizer) -> Optimizer:
    """The recipe's optimizer on tensors; call its `step` under `torch.no_grad()`."""
    return make_shared(spec, TORCH)
