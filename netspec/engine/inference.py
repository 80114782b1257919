"""The NumPy engine's inference on a spec: what `netspec predict spec.net --weights W` runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from netspec.engine.executor import Executor
from netspec.feeds import InputSignature, validate
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.ops.base import Array, Ctx
from netspec.runs import check_weights, expected_shapes


def predict_outputs(
    analysis: Analysis,
    inputs: dict[str, Any],
    params: dict[str, Any],
    batch: int,
    logits: bool,
    normalization: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Outputs by name in eval mode, `batch` samples at a time; a classifier's outputs as the
    loss's probabilities (`<out>.probs`) unless `logits`, as the exported model gives them."""
    net = analysis.network
    check_weights(params, expected_shapes(analysis), "the weights")
    signature = [
        InputSignature(
            node.name,
            np.dtype(getattr(node.op, "dtype", "float32")),
            (None, *analysis.shape(node.name)),
        )
        for node in net.inputs
    ]
    # Checked before normalising: a badly shaped input must be named, not fail to broadcast.
    feed = validate(signature, inputs)
    if normalization is not None:  # as the exported model does it, on the first input
        first = net.inputs[0].name
        shift, scale = normalization
        feed[first] = ((feed[first] - shift) / scale).astype(feed[first].dtype)
    executor = Executor(analysis)
    total = len(next(iter(feed.values())))
    parts = [
        executor.forward({k: v[s : s + batch] for k, v in feed.items()}, params, Ctx(), False)[0]
        for s in range(0, total, batch)
    ]
    outs = {o: np.concatenate([p[o] for p in parts]) for o in net.outputs}
    if logits or net.train is None:
        return outs
    shown: dict[str, Array] = {}
    for o, (name, _) in net.train.output_losses(net.outputs).items():
        loss = LOSSES[name]
        if loss.activation is None:
            shown[o] = outs[o]
        else:  # each output's loss's activation, as in training and in the exported model
            shown[f"{o}.probs"] = loss.probabilities(outs[o])
    return shown
