"""Optimizers against torch.optim in float64, fed the same gradients and learning rates."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
import pytest
import torch

from netspec import recipe
from netspec.engine.optimizers import make_optimizer

SHAPES = {"fc.weight": (3, 4), "fc.bias": (3,)}
LRS = (0.1, 0.05, 0.02)  # a changing rate, as a schedule would pass

TorchFactory = Callable[[Iterable[torch.Tensor], float], torch.optim.Optimizer]


def start() -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(1)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in LRS]
    return params, grads


def run_torch(factory: TorchFactory, steps: int) -> dict[str, np.ndarray]:
    params, grads = start()
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = factory(tensors.values(), LRS[0])
    for lr, g in zip(LRS[:steps], grads, strict=False):
        for group in opt.param_groups:
            group["lr"] = lr
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        opt.step()
    return {k: t.detach().numpy() for k, t in tensors.items()}


CASES: list[tuple[recipe.Optimizer, TorchFactory]] = [
    (recipe.SGD(), lambda p, lr: torch.optim.SGD(p, lr=lr)),
    (recipe.BGD(weight_decay=0.1), lambda p, lr: torch.optim.SGD(p, lr=lr, weight_decay=0.1)),
    (
        recipe.Momentum(momentum=0.8, weight_decay=0.1),
        lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.8, weight_decay=0.1),
    ),
    (
        recipe.Nesterov(momentum=0.9),
        lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    ),
    (
        recipe.AdaGrad(),
        lambda p, lr: torch.optim.Adagrad(p, lr=lr, eps=1e-7, initial_accumulator_value=0),
    ),
    (
        recipe.RMSProp(rho=0.8, weight_decay=0.1),
        lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.8, eps=1e-6, weight_decay=0.1),
    ),
    (
        recipe.RMSProp(momentum=0.7),
        lambda p, lr: torch.optim.RMSprop(p, lr=lr, alpha=0.9, eps=1e-6, momentum=0.7),
    ),
    (recipe.Adam(), lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.9, 0.999), eps=1e-8)),
    (
        recipe.Adam(beta1=0.8, beta2=0.9, weight_decay=0.1),
        lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.8, 0.9), weight_decay=0.1),
    ),
    (
        recipe.AdamW(),
        lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    ),
]
IDS = [f"{spec.name}-{k}" for k, (spec, _) in enumerate(CASES)]


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize(("spec", "factory"), CASES, ids=IDS)
def test_optimizer_steps_match_torch_optim(
    spec: recipe.Optimizer, factory: TorchFactory, steps: int
) -> None:
    params, grads = start()
    opt = make_optimizer(spec)
    for lr, g in zip(LRS[:steps], grads, strict=False):
        opt.step(params, g, lr)
    want = run_torch(factory, steps)
    for k in SHAPES:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("spec", "factory"), CASES, ids=IDS)
def test_optimizer_resumed_from_a_saved_state_dict_continues_identically(
    spec: recipe.Optimizer, factory: TorchFactory
) -> None:
    params, grads = start()
    straight = make_optimizer(spec)
    for lr, g in zip(LRS, grads, strict=False):
        straight.step(params, g, lr)

    resumed_params, _ = start()
    first = make_optimizer(spec)
    first.step(resumed_params, grads[0], LRS[0])
    buffer = io.BytesIO()
    np.savez(buffer, **first.state_dict())  # type: ignore[arg-type]  # numpy's stub
    saved_params = {k: v.copy() for k, v in resumed_params.items()}
    first.step(resumed_params, grads[1], 123.0)  # what happens after the save must not leak
    buffer.seek(0)
    with np.load(buffer) as saved:
        second = make_optimizer(spec)
        second.load_state_dict(dict(saved))
    for lr, g in zip(LRS[1:], grads[1:], strict=False):
        second.step(saved_params, g, lr)
    for k in SHAPES:
        np.testing.assert_array_equal(saved_params[k], params[k])


def test_optimizer_updates_the_callers_arrays_in_place() -> None:
    params, grads = start()
    before = {k: id(v) for k, v in params.items()}
    make_optimizer(recipe.Adam()).step(params, grads[0], 0.1)
    assert {k: id(v) for k, v in params.items()} == before
    assert not np.array_equal(params["fc.bias"], start()[0]["fc.bias"])


def test_rmsprop_nesterov_matches_the_textbook_lookahead_loop() -> None:
    """Goodfellow et al. Alg. 8.6 evaluates g at the interim point w + mu v; the optimizer
    stores that look-ahead point, so its parameters equal the book's w + mu v at every step.
    (eps is added outside the square root in both, the PyTorch placement.)"""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 4))
    a = a @ a.T + np.eye(4)  # a convex quadratic 0.5 w'Aw - b'w
    b = rng.normal(size=4)

    def grad(w: np.ndarray) -> np.ndarray:
        return a @ w - b

    lr, rho, mu, eps = 0.01, 0.9, 0.8, 1e-6
    w0 = rng.normal(size=4)

    theta, v, r = w0.copy(), np.zeros(4), np.zeros(4)
    params = {"w": w0.copy()}
    opt = make_optimizer(recipe.RMSProp(lr=lr, rho=rho, momentum=mu, nesterov=True, eps=eps))
    for _ in range(5):
        g = grad(theta + mu * v)  # interim update
        r = rho * r + (1 - rho) * g * g
        v = mu * v - lr * g / (np.sqrt(r) + eps)
        theta = theta + v

        opt.step(params, {"w": grad(params["w"])}, lr)
        np.testing.assert_allclose(params["w"], theta + mu * v, rtol=1e-12, atol=1e-14)
