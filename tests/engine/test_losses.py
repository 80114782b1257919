"""Losses against torch.nn.functional (value and autograd gradient) and finite differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from netspec.losses import LOSSES

RNG = np.random.default_rng(0)
N, K = 6, 4

TorchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def torch_value_and_grad(
    fn: TorchLoss, output: np.ndarray, target: np.ndarray
) -> tuple[float, np.ndarray]:
    x = torch.tensor(output, requires_grad=True)
    loss = fn(x, torch.tensor(target))
    loss.backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None
    return float(loss.detach()), x.grad.numpy()


def finite_difference(
    name: str, output: np.ndarray, target: np.ndarray, h: float = 1e-6
) -> np.ndarray:
    grad = np.zeros_like(output)
    for idx in np.ndindex(output.shape):
        up, down = output.copy(), output.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (LOSSES[name](up, target)[0] - LOSSES[name](down, target)[0]) / (2 * h)
    return grad


def one_hot_probs() -> np.ndarray:
    p = RNG.random((N, K))
    return p / p.sum(axis=1, keepdims=True)


CASES: list[tuple[str, np.ndarray, np.ndarray, TorchLoss]] = [
    ("mse", RNG.normal(size=(N, 3)), RNG.normal(size=(N, 3)), F.mse_loss),
    ("mae", RNG.normal(size=(N, 3)), RNG.normal(size=(N, 3)), F.l1_loss),
    (
        "cross_entropy",
        RNG.normal(size=(N, K)),
        RNG.integers(0, K, N),
        F.cross_entropy,
    ),
    ("cross_entropy", RNG.normal(size=(N, K)), one_hot_probs(), F.cross_entropy),
    (
        "binary_cross_entropy",
        RNG.normal(size=(N, 1)),
        RNG.integers(0, 2, (N, 1)).astype(np.float64),
        F.binary_cross_entropy_with_logits,
    ),
    (
        "binary_cross_entropy",
        RNG.normal(size=(N, 3)),
        RNG.integers(0, 2, (N, 3)).astype(np.float64),
        F.binary_cross_entropy_with_logits,
    ),
    ("hinge", RNG.normal(size=(N, K)), RNG.integers(0, K, N), F.multi_margin_loss),
    (
        "hinge",
        RNG.normal(size=(N, 1)),
        RNG.choice([-1.0, 1.0], (N, 1)),
        lambda x, t: torch.clamp(1 - t * x, min=0).mean(),
    ),
]


@pytest.mark.parametrize(("name", "output", "target", "reference"), CASES)
def test_loss_value_and_gradient_match_torch(
    name: str, output: np.ndarray, target: np.ndarray, reference: TorchLoss
) -> None:
    loss, grad = LOSSES[name](output, target)
    want_loss, want_grad = torch_value_and_grad(reference, output, target)
    assert loss == pytest.approx(want_loss, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "output", "target", "reference"), CASES)
def test_loss_gradient_matches_finite_differences(
    name: str, output: np.ndarray, target: np.ndarray, reference: TorchLoss
) -> None:
    _, grad = LOSSES[name](output, target)
    np.testing.assert_allclose(grad, finite_difference(name, output, target), atol=1e-7)


def test_regression_losses_accept_flat_targets_for_a_single_output() -> None:
    output, target = RNG.normal(size=(N, 1)), RNG.normal(size=N)
    for name in ("mse", "mae", "binary_cross_entropy"):
        t = (target > 0).astype(np.float64) if name == "binary_cross_entropy" else target
        assert LOSSES[name](output, t)[0] == LOSSES[name](output, t[:, None])[0]


def test_binary_hinge_reads_zero_one_targets_as_minus_one_plus_one() -> None:
    output = RNG.normal(size=(N, 1))
    zero_one = RNG.integers(0, 2, (N, 1)).astype(np.float64)
    a, b = LOSSES["hinge"](output, zero_one), LOSSES["hinge"](output, 2 * zero_one - 1)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_classification_losses_stay_finite_for_huge_logits() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 0.0]])
    labels = np.array([2, 1])
    loss, grad = LOSSES["cross_entropy"](logits, labels)
    want_loss, want_grad = torch_value_and_grad(F.cross_entropy, logits, labels)
    assert loss == pytest.approx(want_loss)
    np.testing.assert_allclose(grad, want_grad, atol=1e-12)

    x = np.array([[1000.0], [-1000.0], [1000.0]])
    t = np.array([[0.0], [1.0], [1.0]])
    loss, grad = LOSSES["binary_cross_entropy"](x, t)
    want_loss, want_grad = torch_value_and_grad(F.binary_cross_entropy_with_logits, x, t)
    assert loss == pytest.approx(want_loss)
    np.testing.assert_allclose(grad, want_grad, atol=1e-12)


def test_cross_entropy_keeps_float32_outputs_in_float32() -> None:
    logits = RNG.normal(size=(N, K)).astype(np.float32)
    for target in (RNG.integers(0, K, N), one_hot_probs().astype(np.float32)):
        _, grad = LOSSES["cross_entropy"](logits, target)
        assert grad.dtype == np.float32


def test_losses_declare_the_probability_function_and_task_for_prediction() -> None:
    assert (LOSSES["cross_entropy"].activation, LOSSES["cross_entropy"].task) == (
        "softmax",
        "classification",
    )
    assert (LOSSES["binary_cross_entropy"].activation, LOSSES["binary_cross_entropy"].task) == (
        "sigmoid",
        "binary",
    )
    assert LOSSES["mse"].task == LOSSES["mae"].task == "regression"
