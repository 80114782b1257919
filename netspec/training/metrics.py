"""Evaluation metrics on raw network outputs (logits or regression values).

Classification: predictions are the argmax of the outputs; a single output column (binary
cross-entropy, binary hinge) is a logit thresholded at 0, and its targets (0/1 or -1/1) at 0.5.
Precision, recall and F1 are macro averages over the classes present in the targets or the
predictions (scikit-learn's default label set; a class never predicted has precision 0). The
confusion matrix has true classes as rows and predicted classes as columns.
Regression metrics on a classification task compare the probabilities (softmax or sigmoid of
the outputs) with one-hot targets. The "threshold" task is a perceptron's: its step unit
outputs 0 or 1, a class label and a regression value at once, so both kinds of metric apply.
Scores per position ([N, T, K] outputs against [N, T] labels: a language model, a tagger) are
scored per token, leaving out the tokens labelled losses.IGNORED (the recipe's ignore_index);
perplexity is exp of the mean cross-entropy per sample or token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from netspec.losses import IGNORED
from netspec.ops.base import Array
from netspec.ops.functional import log_softmax, sigmoid
from netspec.recipe import Metric

CLASSIFICATION_METRICS = frozenset(
    {"accuracy", "top_k", "precision", "recall", "f1", "confusion", "perplexity"}
)


def _per_row(outputs: Array, targets: Array) -> tuple[Array, Array]:
    """Scores per position ([N, T, K] outputs, [N, T] labels) as one row per position, and
    only the rows that count (labels other than IGNORED): metrics average over tokens."""
    k = outputs.shape[-1]
    t = np.asarray(targets)
    if t.ndim == outputs.ndim:  # rows of probabilities
        return outputs.reshape(-1, k), t.reshape(-1, k)
    labels = t.reshape(-1)
    keep = labels != IGNORED
    if keep.all():  # no padding: the rows as they are, not a masked copy of every one
        return outputs.reshape(-1, k), labels
    return outputs.reshape(-1, k)[keep], labels[keep]


def _perplexity(outputs: Array, targets: Array) -> float:
    """exp of the mean cross-entropy per sample or token (of the sigmoid, for one column)."""
    y = np.asarray(outputs, dtype=np.float64)
    t = np.asarray(targets)
    if y.ndim == 1 or y.shape[-1] == 1:
        x, on = y.reshape(-1), (t.reshape(-1) > 0.5)
        nll = np.logaddexp(0, np.where(on, -x, x))  # -log sigmoid(+-x)
    elif t.ndim == y.ndim:
        nll = -np.sum(t * log_softmax(y), axis=-1)
    else:
        nll = -log_softmax(y)[np.arange(len(y)), t.astype(np.int64)]
    return float(np.exp(np.mean(nll))) if nll.size else 1.0


def _labels(outputs: Array, targets: Array) -> tuple[Array, Array, int, bool]:
    """(true labels, predicted labels, number of classes, binary?)."""
    t = np.asarray(targets)
    binary = outputs.ndim == 1 or outputs.shape[-1] == 1
    if binary:
        pred = (outputs.reshape(-1) > 0).astype(np.int64)
        true = (t.reshape(-1) > 0.5).astype(np.int64)
        return true, pred, 2, True
    k = outputs.shape[-1]
    true = t.argmax(axis=-1) if t.ndim == outputs.ndim else t.astype(np.int64, copy=False)
    return true, outputs.argmax(axis=-1), k, False


def confusion_matrix(true: Array, pred: Array, k: int) -> Array:
    """counts[i, j] = samples of class i predicted as j."""
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (true, pred), 1)
    return counts


def _macro(counts: Array) -> tuple[float, float, float]:
    tp = np.diag(counts).astype(np.float64)
    predicted, actual = counts.sum(axis=0), counts.sum(axis=1)
    present = (predicted + actual) > 0
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return (
        float(precision[present].mean()),
        float(recall[present].mean()),
        float(f1[present].mean()),
    )


def _top_k(outputs: Array, true: Array, k: int, binary: bool) -> float:
    if binary:
        return 1.0  # k >= 2 of two classes always includes the true one
    k = min(k, outputs.shape[-1])
    top = np.argpartition(-outputs, k - 1, axis=-1)[:, :k]
    return float(np.mean(np.any(top == true[:, None], axis=-1)))


def _regression_pair(outputs: Array, targets: Array, task: str) -> tuple[Array, Array]:
    """(predictions, targets) as 2-D float arrays of one shape."""
    y = np.asarray(outputs, dtype=np.float64)
    t = np.asarray(targets)
    if task not in ("regression", "threshold"):
        if y.ndim == 1 or y.shape[-1] == 1:
            y = sigmoid(y)
            t = (t > 0.5).astype(np.float64)
        else:
            y = np.exp(log_softmax(y))
            if t.ndim == 1:
                t = np.eye(y.shape[-1])[t.astype(np.int64)]
    t = np.asarray(t, dtype=np.float64).reshape(y.shape)
    return y.reshape(len(y), -1), t.reshape(len(t), -1)


def _mean(a: Array) -> float:
    """np.mean's value (the same pairwise sum over the count) without its Python wrapper's
    5 us: a tiny run scores every epoch, and an XOR epoch's step is 0.2 ms."""
    return float(np.add.reduce(a, axis=None) / a.size) if a.size else float("nan")


def _r2(y: Array, t: Array) -> float:
    """Mean over output columns of 1 - SS_res / SS_tot (scikit-learn's uniform average)."""
    d = t - y
    ss_res = np.add.reduce(np.multiply(d, d, out=d), axis=0)
    c = t - np.add.reduce(t, axis=0) / len(t)
    ss_tot = np.add.reduce(np.multiply(c, c, out=c), axis=0)
    if ss_tot.size == 1:  # one output column (the usual regression): plain floats
        res, tot = float(ss_res[0]), float(ss_tot[0])
        return 1 - res / tot if tot > 0 else (0.0 if res > 0 else 1.0)
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / safe, np.where(ss_res > 0, 0.0, 1.0))
    return float(r2.mean())


def compute_metrics(
    metrics: Sequence[Metric], outputs: Array, targets: Array, task: str
) -> dict[str, float | list[list[int]]]:
    """Each requested metric by name (`top_k` as `top_<k>_accuracy`)."""
    out: dict[str, float | list[list[int]]] = {}
    need_labels = any(m.name in CLASSIFICATION_METRICS for m in metrics)
    if need_labels and task == "regression":
        wanted = ", ".join(m.name for m in metrics if m.name in CLASSIFICATION_METRICS)
        raise ValueError(f"metrics {wanted} need a classification loss, not a regression one")
    if task not in ("regression", "threshold") and outputs.ndim >= 2 and outputs.shape[-1] > 1:
        outputs, targets = _per_row(outputs, targets)
    # Each is computed once, and only when some metric asks for it: a tiny run scores every
    # epoch, and the confusion matrix or a second regression pair cost as much as its step.
    if need_labels:
        true, pred, k, binary = _labels(outputs, targets)
        accuracy = _mean(true == pred)
    if any(m.name in ("precision", "recall", "f1", "confusion") for m in metrics):
        k = max(k, int(true.max(initial=0)) + 1)
        counts = confusion_matrix(true, pred, k)
        precision, recall, f1 = _macro(counts)
    if any(m.name in ("mse", "mae", "r2") for m in metrics):
        y, t = _regression_pair(outputs, targets, task)
    for m in metrics:
        match m.name:
            case "accuracy":
                out["accuracy"] = accuracy
            case "top_k":
                top = accuracy if m.k == 1 else _top_k(outputs, true, m.k, binary)
                out[f"top_{m.k}_accuracy"] = top
            case "precision":
                out["precision"] = precision
            case "recall":
                out["recall"] = recall
            case "f1":
                out["f1"] = f1
            case "confusion":
                out["confusion"] = counts.tolist()
            case "perplexity":
                out["perplexity"] = _perplexity(outputs, targets)
            case "mse":
                d = y - t
                out["mse"] = _mean(np.multiply(d, d, out=d))
            case "mae":
                d = y - t
                out["mae"] = _mean(np.abs(d, out=d))
            case "r2":
                out["r2"] = _r2(y, t)
    return out
