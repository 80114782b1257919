"""Optimizers: one small class each, updating parameters in place, state kept here (never in ops),
for every engine: the formulas are written once, on any array type whose `Arrays` gives its
zeros and square root (NumPy arrays here, torch tensors in netspec/torch), so the engines take
the same steps and a checkpoint of either resumes on the other.

Each `update` is the textbook line (Goodfellow, Bengio & Courville, Deep Learning, ch. 8), in
the formulation PyTorch uses where the two differ, so `torch.optim` is a test oracle:

- momentum: v = mu v + g; w -= lr v (PyTorch `SGD(momentum=mu)`; the book's v = mu v - lr g;
  w += v is the same for a constant lr);
- Nesterov: v = mu v + g; w -= lr (g + mu v) (PyTorch `SGD(nesterov=True)`, after Sutskever et
  al. 2013): the book's look-ahead (Alg. 8.3) rewritten in the look-ahead point's coordinates,
  so the gradient is taken at the stored parameters;
- AdaGrad and RMSProp add eps outside the square root (PyTorch); the book puts RMSProp's delta
  inside;
- RMSProp with Nesterov momentum (Alg. 8.6) uses the same change of coordinates as Nesterov.

The spec's `weight_decay` is coupled L2 (wd * w added to the gradient), except in AdamW, where it
is decoupled (w -= lr wd w before the Adam step; Loshchilov & Hutter 2019).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from netspec import recipe
from netspec.ops.base import Array


class Arrays(Protocol):
    """What an optimizer needs of an engine's array type."""

    def zeros_like(self, w: Any) -> Any: ...

    def sqrt(self, x: Any) -> Any: ...

    def to_numpy(self, x: Any) -> Array: ...

    def from_numpy(self, value: Array, like: Any | None) -> Any: ...


class NumpyArrays:
    """The NumPy engine's arrays (a slot loaded from a checkpoint keeps the file's dtype)."""

    def zeros_like(self, w: Array) -> Array:
        return np.zeros_like(w)

    def sqrt(self, x: Array) -> Array:
        return np.sqrt(x)

    def to_numpy(self, x: Array) -> Array:
        return x.copy()

    def from_numpy(self, value: Array, like: Array | None) -> Array:
        return np.array(value, copy=True)


NUMPY = NumpyArrays()


class Optimizer:
    """Base: `step(params, grads, lr)` updates every param that has a gradient, in place."""

    slots: tuple[str, ...] = ()  # the per-parameter state arrays: the recipe's (recipe._Opt.slots)
    coupled_decay: bool = True

    def __init__(self, weight_decay: float, arrays: Arrays = NUMPY) -> None:
        self.arrays = arrays
        self.weight_decay = weight_decay
        self.t = 0  # steps taken
        self.state: dict[str, dict[str, Any]] = {slot: {} for slot in self.slots}

    def _slot(self, slot: str, name: str, w: Any) -> Any:
        table = self.state[slot]
        if name not in table:
            table[name] = self.arrays.zeros_like(w)
        return table[name]

    def step(self, params: Mapping[str, Any], grads: Mapping[str, Any], lr: float) -> None:
        self.t += 1
        for name in sorted(grads):
            w, g = params[name], grads[name]
            if self.coupled_decay and self.weight_decay != 0:
                g = g + self.weight_decay * w
            self.update(name, w, g, lr)

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Flat arrays (`m.layer1.weight`, ...) and the step counter, for checkpoints."""
        out: dict[str, Array] = {"step": np.array(self.t, dtype=np.int64)}
        for slot, table in self.state.items():
            for name, value in table.items():
                out[f"{slot}.{name}"] = self.arrays.to_numpy(value)
        return out

    def load_state_dict(
        self, d: Mapping[str, Any], params: Mapping[str, Any] | None = None
    ) -> None:
        """State saved by either engine; with `params`, each slot is made like its parameter
        (device, dtype) and slots of other parameters are left out."""
        self.t = int(d["step"])
        self.state = {slot: {} for slot in self.slots}
        for key, value in d.items():
            slot, _, name = key.partition(".")
            if slot in self.state and name and (params is None or name in params):
                like = None if params is None else params[name]
                self.state[slot][name] = self.arrays.from_numpy(value, like)


class SGD(Optimizer):
    """w -= lr g (also full-batch gradient descent: the loop decides the batch)."""

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        w -= lr * g


class Momentum(Optimizer):
    slots = recipe.Momentum.slots

    def __init__(self, weight_decay: float, momentum: float, arrays: Arrays = NUMPY) -> None:
        super().__init__(weight_decay, arrays)
        self.mu = momentum

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        v = self._slot("v", name, w)
        v *= self.mu
        v += g  # v = mu v + g
        w -= lr * v


class Nesterov(Momentum):
    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        v = self._slot("v", name, w)
        v *= self.mu
        v += g  # v = mu v + g
        w -= lr * (g + self.mu * v)


class AdaGrad(Optimizer):
    slots = recipe.AdaGrad.slots

    def __init__(self, weight_decay: float, eps: float, arrays: Arrays = NUMPY) -> None:
        super().__init__(weight_decay, arrays)
        self.eps = eps

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        r = self._slot("r", name, w)
        r += g * g  # r = r + g^2
        w -= lr * g / (self.arrays.sqrt(r) + self.eps)


class RMSProp(Optimizer):
    slots = recipe.RMSProp.slots

    def __init__(
        self,
        weight_decay: float,
        rho: float,
        eps: float,
        momentum: float,
        nesterov: bool,
        arrays: Arrays = NUMPY,
    ) -> None:
        super().__init__(weight_decay, arrays)
        self.rho, self.eps, self.mu, self.nesterov = rho, eps, momentum, nesterov

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        r = self._slot("r", name, w)
        r *= self.rho
        r += (1 - self.rho) * g * g  # r = rho r + (1 - rho) g^2
        scaled = g / (self.arrays.sqrt(r) + self.eps)
        if self.mu == 0:
            w -= lr * scaled
            return
        v = self._slot("v", name, w)
        v *= self.mu
        v += scaled  # v = mu v + g / (sqrt(r) + eps)
        w -= lr * (scaled + self.mu * v) if self.nesterov else lr * v


class Adam(Optimizer):
    slots = recipe.Adam.slots

    def __init__(
        self, weight_decay: float, beta1: float, beta2: float, eps: float, arrays: Arrays = NUMPY
    ) -> None:
        super().__init__(weight_decay, arrays)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        m, v = self._slot("m", name, w), self._slot("v", name, w)
        m *= self.beta1
        m += (1 - self.beta1) * g  # first moment
        v *= self.beta2
        v += (1 - self.beta2) * g * g  # second moment
        m_hat_scale = 1 / (1 - self.beta1**self.t)  # bias corrections
        v_hat_scale = 1 / (1 - self.beta2**self.t)
        w -= lr * (m * m_hat_scale) / (self.arrays.sqrt(v * v_hat_scale) + self.eps)


class AdamW(Adam):
    coupled_decay = False

    def update(self, name: str, w: Any, g: Any, lr: float) -> None:
        w *= 1 - lr * self.weight_decay  # decoupled decay, before the Adam step (as PyTorch)
        super().update(name, w, g, lr)


def make_optimizer(spec: recipe.Optimizer, arrays: Arrays = NUMPY) -> Optimizer:
    """The optimizer a recipe names, with the recipe's hyperparameters (defaults live there),
    on an engine's `arrays`."""
    wd, a = spec.weight_decay, arrays
    match spec:
        case recipe.BGD() | recipe.SGD():
            return SGD(wd, a)
        case recipe.Momentum():
            return Momentum(wd, spec.momentum, a)
        case recipe.Nesterov():
            return Nesterov(wd, spec.momentum, a)
        case recipe.AdaGrad():
            return AdaGrad(wd, spec.eps, a)
        case recipe.RMSProp():
            return RMSProp(wd, spec.rho, spec.eps, spec.momentum, spec.nesterov, a)
        case recipe.AdamW():  # before Adam: AdamW subclasses it
            return AdamW(wd, spec.beta1, spec.beta2, spec.eps, a)
        case recipe.Adam():
            return Adam(wd, spec.beta1, spec.beta2, spec.eps, a)
    raise AssertionError(f"unhandled optimizer {spec.name}")
