"""Rosenblatt's perceptron rule for a `step` unit, as one plain gradient step.

The `step` activation's true derivative is zero, so by default its backward is the
straight-through estimator (the gradient passes unchanged). With ``perceptron_rule = true``, a
network whose only trainable layer feeds `step` is trained by ``w += lr * (y - y_hat) x`` and
``b += lr * (y - y_hat)``, summed over the batch, with the recipe's learning rate (and
schedule) and no optimizer state; any other network is refused.
"""

from __future__ import annotations

import numpy as np

from netspec.engine.executor import Executor, Tape
from netspec.errors import NetspecError
from netspec.ir import Analysis
from netspec.ops.base import Array, Params


def perceptron_layer(analysis: Analysis) -> str | None:
    """The layer a perceptron rule trains: the only trainable one, feeding a threshold unit.

    A threshold unit is an op without a useful derivative (`step`); no op is named here.
    """
    trainable = {name for name, info in analysis.layers.items() if info.param_shapes}
    if len(trainable) != 1:
        return None
    (layer,) = trainable
    consumers = [n for n in analysis.network.nodes if layer in n.inputs]
    if len(consumers) == 1 and not consumers[0].op.differentiable:
        return layer
    return None


def require_perceptron(analysis: Analysis) -> str:
    layer = perceptron_layer(analysis)
    if layer is None:
        raise NetspecError.at(
            "perceptron_rule = true needs a network whose only trainable layer feeds a "
            "threshold unit (e.g. `dense(1) step`)",
            hint="remove perceptron_rule to train by gradient descent (step's backward is "
            "straight-through)",
        )
    return layer


def perceptron_step(
    executor: Executor,
    tape: Tape,
    params: Params,
    output: str,
    y_hat: Array,
    target: Array,
    lr: float,
) -> None:
    """Rosenblatt's rule, w += lr (y - y_hat) x, as one plain gradient step.

    The threshold unit's backward is straight-through, so backpropagating (y_hat - y) gives the
    layer exactly (y_hat - y)^T x for its weights and the summed error for its bias.
    """
    err = (y_hat - target.reshape(y_hat.shape)).astype(y_hat.dtype)
    for name, grad in executor.backward(tape, {output: err}, params).items():
        params[name] -= np.asarray(lr, dtype=grad.dtype) * grad
