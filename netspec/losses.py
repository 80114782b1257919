"""The losses, one class each: what it is (its metadata, read by the analysis, the data loader,
prediction and export) beside how it is computed (NumPy: the mean loss over the batch and its
gradient w.r.t. the output). Adding a loss is one class here and one entry in LOSSES.

Classification losses take logits and fuse the probability function in (softmax for
cross-entropy, sigmoid for binary cross-entropy): the fused gradient `p - t` is exact and stable
where `log(softmax(x))` computed in two steps overflows. `Loss.activation` names that function;
prediction and export apply it to raw outputs (`probabilities`).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from netspec.ops.base import Array
from netspec.ops.functional import log_softmax, sigmoid

Task = Literal["classification", "binary", "regression"]
Activation = Literal["softmax", "sigmoid"]

# The label of a position that does not count (padding, a prompt): training/data.py maps the
# recipe's `ignore_index` to it, so a loss or a metric needs no recipe to know which it is.
IGNORED = -1


def _like(target: Array, output: Array) -> Array:
    """The target as an array of the output's shape and dtype ((N,) targets for (N, 1) outputs)."""
    t = np.asarray(target)
    if t.shape != output.shape and t.size == output.size:
        t = t.reshape(output.shape)
    if t.shape != output.shape:
        raise ValueError(f"target shape {list(t.shape)} does not match output {list(output.shape)}")
    return t.astype(output.dtype, copy=False)


class Loss:
    """A loss: `loss(output, target) -> (mean loss, d loss / d output)`, and what it needs."""

    name: ClassVar[str]
    # The probability function fused into the loss; it is also the name of the op a network
    # must not end with (softmax before cross_entropy would apply it twice).
    activation: ClassVar[Activation | None] = None
    task: ClassVar[Task] = "regression"
    # Takes (N, K) rows of class probabilities as targets, not only one class per sample.
    soft_targets: ClassVar[bool] = False
    # Needs one score per class: a [K] output.
    scores_per_class: ClassVar[bool] = False
    # Also takes scores at each position, a [T, K] output against [T] labels (language
    # modelling, tagging), averaged over the positions that count (see IGNORED).
    per_position: ClassVar[bool] = False

    def __call__(self, output: Array, target: Array) -> tuple[float, Array]:
        raise NotImplementedError

    def probabilities(self, output: Array) -> Array:
        """Raw outputs as the probabilities the loss fuses in (unchanged without one)."""
        if self.activation == "softmax":
            return np.exp(log_softmax(output))
        if self.activation == "sigmoid":
            return sigmoid(output)
        return output


class MSE(Loss):
    """Mean of (y - t)^2 over every element (PyTorch `reduction='mean'`)."""

    name = "mse"

    def __call__(self, output: Array, target: Array) -> tuple[float, Array]:
        diff = output - _like(target, output)
        return float(np.mean(diff * diff)), 2 * diff / diff.size


class MAE(Loss):
    """Mean of |y - t| over every element; the subgradient at 0 is 0, as in PyTorch."""

    name = "mae"

    def __call__(self, output: Array, target: Array) -> tuple[float, Array]:
        diff = output - _like(target, output)
        return float(np.mean(np.abs(diff))), np.sign(diff) / diff.size


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits (N, K) or per position (N, T, K): targets are labels
    (N,) / (N, T) or probabilities shaped like the output.

    loss = -sum_i sum_k t_ik log softmax(x)_ik / M over the M rows i (samples, or tokens) whose
    label is not IGNORED (PyTorch's `ignore_index` with mean reduction); gradient
    (softmax(x) * sum_k t_ik - t) / M, zero on ignored rows. No row counting gives 0.
    """

    name = "cross_entropy"
    activation = "softmax"
    task = "classification"
    soft_targets = True
    scores_per_class = True
    per_position = True

    def __call__(self, output: Array, target: Array) -> tuple[float, Array]:
        k = output.shape[-1]
        x = output.reshape(-1, k)  # one row per sample or token
        t = np.asarray(target)
        if t.ndim == output.ndim - 1:  # class indices
            labels = t.reshape(-1).astype(np.int64)
            counted = labels != IGNORED
            kept = labels[counted]
            if kept.min(initial=0) < 0 or kept.max(initial=0) >= k:
                raise ValueError(f"labels must lie in [0, {k}), got {kept.min()}..{kept.max()}")
            rows = np.zeros_like(x)
            rows[np.flatnonzero(counted), kept] = 1
        else:
            rows = _like(t, output).reshape(-1, k)
            counted = np.ones(len(rows), dtype=bool)
        m = max(int(counted.sum()), 1)
        logp = log_softmax(x)  # (M', K)
        loss = -float(np.sum(rows * logp)) / m
        grad = (np.exp(logp) * rows.sum(axis=-1, keepdims=True) - rows) / m
        return loss, grad.reshape(output.shape).astype(output.dtype, copy=False)


class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy on logits, mean over elements; targets in [0, 1], shaped like y.

    Uses max(x, 0) - x t + log(1 + e^-|x|), which equals -t log s - (1 - t) log(1 - s) for
    s = sigmoid(x) without ever evaluating log(0).
    """

    name = "binary_cross_entropy"
    activation = "sigmoid"
    task = "binary"

    def __call__(self, output: Array, target: Array) -> tuple[float, Array]:
        t = _like(target, output)
        x = output
        loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        return float(np.mean(loss)), (sigmoid(x) - t) / x.size


class Hinge(Loss):
    """Multi-class hinge (Weston-Watkins, as PyTorch's `multi_margin_loss`), or binary hinge.

    Multi-class, logits (N, K) and labels (N,): loss_n = sum_{j != y} max(0, 1 - x_y + x_j) / K
    (PyTorch divides by K), averaged over N. A single output (N, 1) or (N,) uses the binary
    hinge mean(max(0, 1 - t x)) with targets in {-1, 1} or {0, 1} (0 read as -1); threshold
    predictions at 0.
    """

    name = "hinge"
    task = "classification"
    scores_per_class = True

    def __call__(self, output: Array, target: Array) -> tuple[float, Array]:
        if output.ndim == 1 or output.shape[-1] == 1:
            y = np.where(_like(target, output) > 0, 1, -1).astype(output.dtype)
            margin = 1 - y * output
            active = margin > 0
            loss = float(np.mean(np.where(active, margin, 0)))
            return loss, (-y * active / output.size).astype(output.dtype, copy=False)
        n, k = output.shape
        labels = np.asarray(target)
        if labels.ndim == 2:  # one-hot
            labels = labels.argmax(axis=-1)
        labels = labels.astype(np.int64)
        rows = np.arange(n)
        correct = output[rows, labels][:, None]  # (N, 1)
        margins = 1 - correct + output  # (N, K)
        margins[rows, labels] = 0
        active = (margins > 0).astype(output.dtype)
        loss = float(np.sum(margins * active)) / (n * k)
        grad = active
        grad[rows, labels] = -active.sum(axis=-1)
        return loss, grad / (n * k)


LOSSES: dict[str, Loss] = {
    loss.name: loss for loss in (MSE(), MAE(), CrossEntropy(), BinaryCrossEntropy(), Hinge())
}
LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)
