"""Each loss of netspec/losses.py as torch computes it: the same mean value, so autograd's
gradient is the NumPy loss's hand-written one (fused `p - t` for the logit losses, PyTorch's
subgradient 0 at a kink). `TORCH_LOSSES` has one entry per name in `losses.LOSSES`; a test
fails on a loss without its twin here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from netspec.losses import IGNORED, Loss
from netspec.ops.base import Array

TorchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def target_tensor(loss: Loss, target: Array, output: torch.Tensor) -> torch.Tensor:
    """The batch's targets on the output's device: class labels stay int64 (cross-entropy and
    the multi-class hinge take them as indices); everything else takes the output's shape
    ((N,) targets for (N, 1) outputs) and dtype, as losses._like makes them."""
    t = np.asarray(target)
    per_class = loss.scores_per_class and output.ndim >= 2 and output.shape[-1] > 1
    if per_class and t.ndim == output.ndim - 1:
        return torch.as_tensor(t.astype(np.int64), device=output.device)
    if t.shape != tuple(output.shape) and t.size == output.numel():
        t = t.reshape(tuple(output.shape))
    if t.shape != tuple(output.shape):
        raise ValueError(f"target shape {list(t.shape)} does not match output {list(output.shape)}")
    return torch.as_tensor(t, device=output.device).to(output.dtype)


def mse(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    diff = y - t
    return torch.mean(diff * diff)


def mae(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.abs(y - t))


def cross_entropy(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-sum_i sum_k t_ik log softmax(y)_ik / M over the M rows (samples or tokens) that count,
    for labels (IGNORED rows count for nothing) or rows of probabilities."""
    k = y.shape[-1]
    logp = torch.log_softmax(y.reshape(-1, k), dim=-1)
    if t.ndim == y.ndim:
        return -torch.sum(t.reshape(-1, k) * logp) / logp.shape[0]
    labels = t.reshape(-1)
    counted = labels != IGNORED
    kept = labels[counted]
    if len(kept) and (int(kept.min()) < 0 or int(kept.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got {int(kept.min())}..{int(kept.max())}")
    # One-hot rows times log p, as the NumPy loss sums them (not a gather): the same terms in
    # the same order, so both engines' steps agree to the last bit.
    rows = torch.nn.functional.one_hot(labels.clamp(min=0), k).to(y.dtype)
    rows = rows * counted[:, None].to(y.dtype)
    return -torch.sum(rows * logp) / max(len(kept), 1)


def binary_cross_entropy(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(y, t)


def hinge(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Binary hinge on one output (targets {0, 1} or {-1, 1}), else Weston-Watkins / K."""
    if y.ndim == 1 or y.shape[-1] == 1:
        sign = torch.where(t > 0, 1.0, -1.0).to(y.dtype)
        return torch.mean(torch.relu(1 - sign * y))
    n, k = y.shape
    labels = t.argmax(dim=-1) if t.ndim == 2 else t
    rows = torch.arange(n, device=y.device)
    margins = 1 - y[rows, labels][:, None] + y  # (N, K)
    others = torch.ones_like(y)
    others[rows, labels] = 0
    return torch.sum(torch.relu(margins) * others) / (n * k)


TORCH_LOSSES: dict[str, TorchLoss] = {
    "mse": mse,
    "mae": mae,
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "hinge": hinge,
}
