"""Cross-entropy over sequences: a [T, V] output against [T] labels, averaged over the tokens
that count (`ignore_index`), in the NumPy loss, its torch twin, the data loader, the metrics
(accuracy, perplexity) and a recipe that trains, evaluates and predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from netspec import api
from netspec.cli import main
from netspec.errors import NetspecError
from netspec.losses import IGNORED, LOSSES
from netspec.recipe import Metric
from netspec.torch.losses import TORCH_LOSSES
from netspec.training.data import prepare_targets
from netspec.training.metrics import compute_metrics

RNG = np.random.default_rng(3)
N, T, V = 3, 5, 4
CE = LOSSES["cross_entropy"]


def tokens_with_padding(pad: int) -> np.ndarray:
    """Labels (N, T) in [1, V) with three positions set to `pad`."""
    labels = RNG.integers(1, V, (N, T))
    labels[0, 3:] = pad
    labels[2, 0] = pad
    return labels


def reference(logits: np.ndarray, labels: np.ndarray, pad: int) -> tuple[float, np.ndarray]:
    """PyTorch's value and gradient: classes on axis 1, as F.cross_entropy wants them."""
    x = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x.permute(0, 2, 1), torch.tensor(labels), ignore_index=pad)
    loss.backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None
    return float(loss.detach()), x.grad.numpy()


@pytest.mark.parametrize("pad", [-100, 0])
def test_per_token_cross_entropy_matches_torch_with_ignore_index(pad: int) -> None:
    logits, labels = RNG.normal(size=(N, T, V)), tokens_with_padding(pad)
    y = prepare_targets(labels, (T, V), "classification", "t", ignore_index=pad)
    assert y.shape == (N, T) and (y == IGNORED).sum() == 3
    value, grad = CE(logits, y)
    want_value, want_grad = reference(logits, labels, pad)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
    assert not grad[0, 3:].any()  # ignored tokens get no gradient


def test_per_token_cross_entropy_gradient_matches_finite_differences() -> None:
    logits = RNG.normal(size=(N, T, V))
    y = prepare_targets(tokens_with_padding(0), (T, V), "classification", "t", ignore_index=0)
    _, grad = CE(logits, y)
    numeric = np.zeros_like(logits)
    h = 1e-6
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (CE(up, y)[0] - CE(down, y)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, atol=1e-8)


def test_the_torch_twin_gives_the_numpy_losss_value_and_gradient() -> None:
    logits = RNG.normal(size=(N, T, V))
    y = prepare_targets(tokens_with_padding(0), (T, V), "classification", "t", ignore_index=0)
    x = torch.tensor(logits, requires_grad=True)
    value = TORCH_LOSSES["cross_entropy"](x, torch.tensor(y))
    value.backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None
    want_value, want_grad = CE(logits, y)
    assert float(value.detach()) == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), want_grad, rtol=1e-10, atol=1e-14)


def test_targets_out_of_range_name_ignore_index_in_the_hint() -> None:
    labels = tokens_with_padding(-100)
    with pytest.raises(NetspecError) as info:
        prepare_targets(labels, (T, V), "classification", "d.npz", ignore_index=0)
    assert "labels range over -100..3 (ignore_index = 0 aside)" in info.value.diagnostics[0].message
    assert "ignore_index" in str(info.value.diagnostics[0].hint)


def test_targets_of_the_wrong_length_say_one_class_per_position() -> None:
    with pytest.raises(NetspecError) as info:
        prepare_targets(np.zeros((N, T + 1)), (T, V), "classification", "d.npz")
    assert (
        "labels of shape [6] do not fit a classifier with output [5, 4]"
        in info.value.diagnostics[0].message
    )
    assert "one integer class per position, [5] per sample" in str(info.value.diagnostics[0].hint)


def test_one_hot_rows_per_position_become_labels() -> None:
    labels = RNG.integers(0, V, (N, T))
    y = prepare_targets(np.eye(V)[labels], (T, V), "classification", "t")
    np.testing.assert_array_equal(y, labels)


def test_accuracy_and_perplexity_count_only_the_tokens_that_count() -> None:
    logits = RNG.normal(size=(N, T, V))
    y = prepare_targets(tokens_with_padding(0), (T, V), "classification", "t", ignore_index=0)
    metrics = [Metric(name="accuracy"), Metric(name="perplexity")]
    got = compute_metrics(metrics, logits, y, "classification")
    keep = y != IGNORED
    assert got["accuracy"] == pytest.approx(np.mean(logits.argmax(-1)[keep] == y[keep]))
    assert got["perplexity"] == pytest.approx(np.exp(CE(logits, y)[0]), rel=1e-12)


TAGGER = """
network Tagger {
  input tokens: int64[6]
  embedding(10, 8)
  dense(16) relu
  dense(4)
}
train Tagger {
  data = "tags.npz"
  loss = cross_entropy
  ignore_index = 0
  optimizer = adam(lr=0.03)
  epochs = 30
  batch = 32
  validation = 0.25
  metrics = [accuracy, perplexity]
}
"""


def tagging_data(path: Path) -> None:
    """Token ids 1..9 tagged 1 + id % 3, padded with id 0, whose label 0 counts for nothing."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 10, (200, 6))
    x[rng.random((200, 6)) < 0.3] = 0
    y = np.where(x == 0, 0, 1 + x % 3)
    np.savez(path, x=x, y=y)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_tagging_recipe_trains_evaluates_and_predicts_per_token(
    tmp_path: Path, engine: str
) -> None:
    (tmp_path / "t.net").write_text(TAGGER, encoding="utf-8")
    tagging_data(tmp_path / "tags.npz")
    analysis = api.check(api.load(tmp_path / "t.net"))
    result = api.train(analysis, tmp_path / "run", engine=engine, curves=False)  # type: ignore[arg-type]
    last = result.history[-1]
    assert last["val_accuracy"] > 0.98 and last["val_perplexity"] < 1.2
    scores = api.evaluate(analysis, tmp_path / "run").metrics
    assert scores["accuracy"] > 0.98 and scores["perplexity"] == pytest.approx(
        np.exp(scores["loss"])
    )
    x = np.array([[1, 2, 3, 4, 5, 0]])
    outputs, _ = api.predict(
        analysis, {"tokens": x}, params=dict(np.load(tmp_path / "run/weights.npz"))
    )
    probs = outputs["dense_2.probs"]
    assert probs.shape == (1, 6, 4)
    np.testing.assert_array_equal(probs.argmax(-1)[0, :5], 1 + x[0, :5] % 3)


def test_predict_prints_the_likeliest_class_at_each_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.net").write_text(TAGGER.replace("epochs = 30", "epochs = 2"), encoding="utf-8")
    tagging_data(tmp_path / "tags.npz")
    analysis = api.check(api.load(tmp_path / "t.net"))
    api.train(analysis, tmp_path / "run", curves=False)
    np.save(tmp_path / "x.npy", np.array([[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 1, 2]]))
    args = ["predict", str(tmp_path / "t.net"), "--weights", str(tmp_path / "run")]
    assert main([*args, "--input", str(tmp_path / "x.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "output dense_2.probs: shape [2, 6, 4]" in lines
    rows = [line.split("] ", 1)[1].split() for line in lines if line.startswith("  [")]
    assert len(rows) == 2 and all(len(r) == 6 and set(r) <= {"0", "1", "2", "3"} for r in rows)
