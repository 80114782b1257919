"""The NumPy engine's optimizers: the shared formulas (netspec/training/optimizers.py) on NumPy
arrays."""

from netspec.training.optimizers import (
    SGD,
    AdaGrad,
    Adam,
    AdamW,
    Momentum,
    Nesterov,
    Optimizer,
    RMSProp,
    make_optimizer,
)

__all__ = [
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamW",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSProp",
    "make_optimizer",
]
