"""Learning-rate schedules against their formulas, metrics against direct NumPy counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netspec import recipe
from netspec.training.metrics import compute_metrics
from netspec.training.schedules import learning_rate

# ---- schedules -----------------------------------------------------------------------------


def test_constant_schedule_keeps_the_base_rate() -> None:
    assert [learning_rate(recipe.Constant(), 0.1, e, 10) for e in (0, 3.5, 10)] == [0.1] * 3


def test_step_schedule_multiplies_by_gamma_every_few_epochs() -> None:
    spec = recipe.StepDecay(every=3, gamma=0.5)
    got = [learning_rate(spec, 0.8, e, 10) for e in (0, 2.9, 3, 5.5, 6, 9)]
    assert got == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.1])


def test_step_and_exponential_schedules_match_torch_per_epoch() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    for spec, make in (
        (
            recipe.StepDecay(every=2, gamma=0.3),
            lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.3),
        ),
        (recipe.Exponential(gamma=0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    ):
        opt = torch.optim.SGD([w], lr=0.5)
        sched = make(opt)
        for epoch in range(7):
            assert learning_rate(spec, 0.5, epoch, 7) == pytest.approx(sched.get_last_lr()[0])
            opt.step()
            sched.step()


def test_linear_decay_interpolates_to_final_fraction_at_tau_then_stays() -> None:
    spec = recipe.LinearDecay(tau=4, final=0.1)
    eps0, eps_tau = 1.0, 0.1
    for k in (0, 1, 2.5, 4):
        assert learning_rate(spec, eps0, k, 20) == pytest.approx(
            (1 - k / 4) * eps0 + (k / 4) * eps_tau
        )
    assert learning_rate(spec, eps0, 7, 20) == pytest.approx(eps_tau)


def test_linear_decay_defaults_tau_to_the_whole_run() -> None:
    spec = recipe.LinearDecay(final=0.0)
    assert learning_rate(spec, 2.0, 5, 10) == pytest.approx(1.0)
    assert learning_rate(spec, 2.0, 10, 10) == pytest.approx(0.0)


def test_cosine_matches_torch_annealing_and_reaches_final_fraction() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.2 * 0.1)
    spec = recipe.Cosine(final=0.1)
    for epoch in range(9):
        assert learning_rate(spec, 0.2, epoch, 8) == pytest.approx(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert learning_rate(spec, 0.2, 12, 8) == pytest.approx(0.02)


def test_warmup_ramps_linearly_from_zero_then_joins_the_schedule() -> None:
    spec = recipe.Cosine(warmup=2)
    plain = recipe.Cosine()
    assert learning_rate(spec, 0.1, 0, 10) == 0
    for e in (0.5, 1.0, 1.5):
        assert learning_rate(spec, 0.1, e, 10) == pytest.approx(
            e / 2 * learning_rate(plain, 0.1, e, 10)
        )
    for e in (2, 3.5, 10):
        assert learning_rate(spec, 0.1, e, 10) == learning_rate(plain, 0.1, e, 10)
    assert learning_rate(recipe.Constant(warmup=4), 1.0, 1, 10) == pytest.approx(0.25)


# ---- metrics -------------------------------------------------------------------------------


def metrics(*names: str, k: int = 5) -> list[recipe.Metric]:
    return [recipe.Metric(name=n, k=k) for n in names]  # type: ignore[arg-type]


def logits_for(pred: list[int], classes: int) -> np.ndarray:
    out = np.random.default_rng(0).normal(size=(len(pred), classes))
    out[np.arange(len(pred)), pred] = 10.0
    return out


def test_classification_metrics_match_a_hand_checked_confusion_matrix() -> None:
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = [0, 1, 0, 1, 2, 2, 2, 0]
    got = compute_metrics(
        metrics("accuracy", "precision", "recall", "f1", "confusion"),
        logits_for(pred, 3),
        true,
        "classification",
    )
    confusion = [[2, 1, 0], [0, 1, 1], [1, 0, 2]]  # rows true, columns predicted
    assert got["confusion"] == confusion
    c = np.array(confusion, dtype=float)
    precision = np.diag(c) / c.sum(axis=0)  # [2/3, 1/2, 2/3]
    recall = np.diag(c) / c.sum(axis=1)  # [2/3, 1/2, 2/3]
    f1 = 2 * precision * recall / (precision + recall)
    assert got["accuracy"] == pytest.approx(5 / 8)
    assert got["precision"] == pytest.approx(precision.mean())
    assert got["recall"] == pytest.approx(recall.mean())
    assert got["f1"] == pytest.approx(f1.mean())


def test_one_hot_targets_give_the_same_metrics_as_labels() -> None:
    true = np.array([2, 0, 1, 1])
    outputs = logits_for([2, 1, 1, 0], 3)
    names = metrics("accuracy", "f1", "confusion")
    assert compute_metrics(names, outputs, np.eye(3)[true], "classification") == compute_metrics(
        names, outputs, true, "classification"
    )


def test_macro_scores_skip_classes_absent_from_targets_and_predictions() -> None:
    # Classes 2 and 3 never occur: averaging their 0/0 scores would drag every score down.
    got = compute_metrics(
        metrics("precision", "recall"), logits_for([0, 1], 4), np.array([0, 1]), "classification"
    )
    assert got == {"precision": 1.0, "recall": 1.0}


def test_top_k_accuracy_counts_labels_among_the_k_largest_outputs() -> None:
    outputs = np.array([[0.1, 0.5, 0.4, 0.0], [0.9, 0.05, 0.03, 0.02], [0.1, 0.2, 0.3, 0.4]])
    labels = np.array([2, 3, 0])
    got = compute_metrics(metrics("top_k", k=2), outputs, labels, "classification")
    ranks = (-outputs).argsort(axis=1)
    want = np.mean([labels[i] in ranks[i, :2] for i in range(3)])
    assert got == {"top_2_accuracy": pytest.approx(want)}
    assert want == pytest.approx(1 / 3)


def test_binary_metrics_threshold_logits_at_zero() -> None:
    logits = np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    for targets in (np.array([1, 0, 0, 0, 1]), np.array([[1.0], [-1.0], [-1.0], [-1.0], [1.0]])):
        got = compute_metrics(metrics("accuracy", "confusion"), logits, targets, "binary")
        assert got == {"accuracy": pytest.approx(0.8), "confusion": [[2, 1], [0, 2]]}


def test_regression_metrics_match_numpy() -> None:
    rng = np.random.default_rng(4)
    y, t = rng.normal(size=(20, 1)), rng.normal(size=20)
    got = compute_metrics(metrics("mse", "mae", "r2"), y, t, "regression")
    err = y[:, 0] - t
    assert got["mse"] == pytest.approx(np.mean(err**2))
    assert got["mae"] == pytest.approx(np.mean(np.abs(err)))
    assert got["r2"] == pytest.approx(1 - np.sum(err**2) / np.sum((t - t.mean()) ** 2))
    assert compute_metrics(metrics("r2"), t[:, None], t, "regression")["r2"] == 1.0


def test_classification_metrics_refuse_a_regression_task() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        compute_metrics(metrics("accuracy"), np.zeros((2, 1)), np.zeros(2), "regression")


def test_metric_values_are_plain_python_numbers() -> None:
    got = compute_metrics(
        metrics("accuracy", "f1", "confusion"),
        logits_for([1, 0], 2),
        np.array([1, 1]),
        "classification",
    )
    assert isinstance(got["accuracy"], float)
    assert isinstance(got["f1"], float)
    assert all(isinstance(v, int) for row in got["confusion"] for v in row)  # type: ignore[union-attr]
    assert math.isclose(got["accuracy"], 0.5)
