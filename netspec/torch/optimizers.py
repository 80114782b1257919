"""The torch engine's optimizers: the NumPy engine's formulas (engine/optimizers.py) line for
line, on tensors, so the two engines take the same steps; their state is kept under the
recipe's slot names (`v.<param>`, `m.<param>`, `r.<param>`, `step`) and saved as NumPy arrays,
so a checkpoint of either engine resumes on the other.

The update order is the NumPy one (parameters in sorted name order, coupled weight decay added
to the gradient first, AdamW's decoupled decay before its Adam step), and a slot is created on
a parameter's first update, as there: RMSProp without momentum keeps no `v`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from netspec import recipe
from netspec.ops.base import Array


class Optimizer:
    """Base: `step(params, grads, lr)` updates every tensor that has a gradient, in place."""

    slots: tuple[str, ...] = ()
    coupled_decay: bool = True

    def __init__(self, weight_decay: float) -> None:
        self.weight_decay = weight_decay
        self.t = 0
        self.state: dict[str, dict[str, torch.Tensor]] = {slot: {} for slot in self.slots}

    def _slot(self, slot: str, name: str, w: torch.Tensor) -> torch.Tensor:
        table = self.state[slot]
        if name not in table:
            table[name] = torch.zeros_like(w)
        return table[name]

    @torch.no_grad()
    def step(
        self, params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], lr: float
    ) -> None:
        self.t += 1
        for name in sorted(grads):
            w, g = params[name], grads[name]
            if self.coupled_decay and self.weight_decay != 0:
                g = g + self.weight_decay * w
            self.update(name, w, g, lr)

    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Array]:
        """Flat NumPy arrays and the step counter, as the NumPy engine's checkpoints hold them."""
        out: dict[str, Array] = {"step": np.array(self.t, dtype=np.int64)}
        for slot, table in self.state.items():
            for name, value in table.items():
                out[f"{slot}.{name}"] = value.detach().cpu().numpy().copy()
        return out

    def load_state_dict(self, d: Mapping[str, Array], params: Mapping[str, torch.Tensor]) -> None:
        """State of either engine, each slot made on its parameter's device and in its dtype."""
        self.t = int(d["step"])
        self.state = {slot: {} for slot in self.slots}
        for key, value in d.items():
            slot, _, name = key.partition(".")
            if slot in self.state and name in params:
                w = params[name]
                self.state[slot][name] = torch.tensor(
                    np.asarray(value), dtype=w.dtype, device=w.device
                )


class SGD(Optimizer):
    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        w -= lr * g


class Momentum(Optimizer):
    slots = recipe.Momentum.slots

    def __init__(self, weight_decay: float, momentum: float) -> None:
        super().__init__(weight_decay)
        self.mu = momentum

    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        v = self._slot("v", name, w)
        v *= self.mu
        v += g  # v = mu v + g
        w -= lr * v


class Nesterov(Momentum):
    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        v = self._slot("v", name, w)
        v *= self.mu
        v += g
        w -= lr * (g + self.mu * v)


class AdaGrad(Optimizer):
    slots = recipe.AdaGrad.slots

    def __init__(self, weight_decay: float, eps: float) -> None:
        super().__init__(weight_decay)
        self.eps = eps

    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        r = self._slot("r", name, w)
        r += g * g
        w -= lr * g / (torch.sqrt(r) + self.eps)


class RMSProp(Optimizer):
    slots = recipe.RMSProp.slots

    def __init__(
        self, weight_decay: float, rho: float, eps: float, momentum: float, nesterov: bool
    ) -> None:
        super().__init__(weight_decay)
        self.rho, self.eps, self.mu, self.nesterov = rho, eps, momentum, nesterov

    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        r = self._slot("r", name, w)
        r *= self.rho
        r += (1 - self.rho) * g * g
        scaled = g / (torch.sqrt(r) + self.eps)
        if self.mu == 0:
            w -= lr * scaled
            return
        v = self._slot("v", name, w)
        v *= self.mu
        v += scaled
        w -= lr * (scaled + self.mu * v) if self.nesterov else lr * v


class Adam(Optimizer):
    slots = recipe.Adam.slots

    def __init__(self, weight_decay: float, beta1: float, beta2: float, eps: float) -> None:
        super().__init__(weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        m, v = self._slot("m", name, w), self._slot("v", name, w)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat_scale = 1 / (1 - self.beta1**self.t)
        v_hat_scale = 1 / (1 - self.beta2**self.t)
        w -= lr * (m * m_hat_scale) / (torch.sqrt(v * v_hat_scale) + self.eps)


class AdamW(Adam):
    coupled_decay = False

    def update(self, name: str, w: torch.Tensor, g: torch.Tensor, lr: float) -> None:
        w *= 1 - lr * self.weight_decay
        super().update(name, w, g, lr)


def make_optimizer(spec: recipe.Optimizer) -> Optimizer:
    """The optimizer a recipe names, with the recipe's hyperparameters."""
    wd = spec.weight_decay
    match spec:
        case recipe.BGD() | recipe.SGD():
            return SGD(wd)
        case recipe.Momentum():
            return Momentum(wd, spec.momentum)
        case recipe.Nesterov():
            return Nesterov(wd, spec.momentum)
        case recipe.AdaGrad():
            return AdaGrad(wd, spec.eps)
        case recipe.RMSProp():
            return RMSProp(wd, spec.rho, spec.eps, spec.momentum, spec.nesterov)
        case recipe.AdamW():
            return AdamW(wd, spec.beta1, spec.beta2, spec.eps)
        case recipe.Adam():
            return Adam(wd, spec.beta1, spec.beta2, spec.eps)
    raise AssertionError(f"unhandled optimizer {spec.name}")
