"""Mismatches between a network and its train section that the trainer would otherwise find
too late: labels against the output, one loss per output, a loss after the activation it
fuses, what `freeze` names, what `targets = inputs` needs. Part of the analysis
(`graph.analyse`), on its plain results."""

from __future__ import annotations

from netspec.errors import Diagnostic, Severity
from netspec.freezing import frozen_layers, unknown_names
from netspec.ir import LayerInfo, Network, Node
from netspec.losses import LOSSES


def _error(node: Node, message: str, hint: str | None = None) -> Diagnostic:
    return node.diagnostic(Severity.ERROR, message, hint)


def _loss_lists(net: Network) -> list[Diagnostic]:
    """`losses` and `loss_weights` give one entry per output, in `output` order."""
    assert net.train is not None
    last = net.node(net.outputs[-1])
    diags = []
    for key in ("losses", "loss_weights"):
        given = getattr(net.train, key)
        if given is not None and len(given) != len(net.outputs):
            diags.append(
                _error(
                    last,
                    f"train gives {len(given)} {key} but network {net.name} has "
                    f"{len(net.outputs)} output(s): {', '.join(net.outputs)}",
                    f"give one per output, in the order of `output`: {key} = [...]",
                )
            )
    weights = net.train.loss_weights
    if len(net.outputs) == 1 and weights is not None and weights != (1.0,):
        diags.append(
            _error(
                last,
                f"loss_weights weigh the losses of several outputs; network {net.name} has one",
                "drop loss_weights (to scale the steps, change the learning rate)",
            )
        )
    return diags


def _freeze(net: Network, layers: dict[str, LayerInfo]) -> list[Diagnostic]:
    """`freeze` names layers of this network (an IR JSON's were never checked against its
    spec) and leaves something to train."""
    assert net.train is not None
    if not net.train.freeze:
        return []
    last = net.node(net.outputs[-1])
    bad = unknown_names(net.train.freeze, net.nodes)
    if bad:
        return [
            _error(last, f"freeze: network {net.name} has no layer or block named '{n}'", hint)
            for n, hint in bad
        ]
    frozen = frozen_layers(net)
    if any(i.param_shapes for i in layers.values()) and all(
        not info.param_shapes or name in frozen for name, info in layers.items()
    ):
        return [
            _error(
                last,
                f"freeze leaves nothing of network {net.name} to train: every layer with "
                "parameters is frozen",
                "unfreeze a layer (the head, say) or evaluate the model with `netspec eval`",
            )
        ]
    return []


def recipe_checks(net: Network, layers: dict[str, LayerInfo]) -> list[Diagnostic]:
    """Network/recipe mismatches the trainer would otherwise discover too late."""
    if net.train is None:
        return []
    diags = []
    labels = net.train.labels
    if labels is not None and len(net.outputs) == 1:
        last = net.node(net.outputs[0])
        info = layers.get(last.name)
        # Checked only where the output's shape is known; `analyse` reports the rest.
        classes = None if info is None or info.output_shape is None else info.output_shape[-1]
        if classes is not None and classes != len(labels):
            diags.append(
                _error(
                    last,
                    f"train names {len(labels)} labels but '{last.name}' has {classes} outputs",
                    "give one label per output class, in class-index order",
                )
            )
    diags += _loss_lists(net) + _freeze(net, layers)
    if net.train.targets == "inputs":
        diags += _inputs_as_targets(net, layers)
    chosen = net.train.output_losses(net.outputs)
    for out in net.outputs:
        loss = LOSSES[chosen[out][0]]
        node = net.node(out)
        info = layers.get(out)
        shape = None if info is None else info.output_shape
        ranks = (1, 2) if loss.per_position else (1,)
        if shape is not None and loss.scores_per_class and len(shape) not in ranks:
            per = " or [T, K] (K per position)" if loss.per_position else ""
            diags.append(
                _error(
                    node,
                    f"{loss.name} needs one score per class, a [K] output{per}; '{out}' gives "
                    f"{list(shape)}",
                    "end with `flatten` and a `dense(K)` for K classes",
                )
            )
        elif shape and shape[-1] == 1 and loss.scores_per_class and loss.activation == "softmax":
            diags.append(
                _error(
                    node,
                    f"{loss.name} over the one output unit of '{out}' is always 0 (the "
                    "softmax of one logit is 1): nothing would train",
                    "for two classes use binary_cross_entropy on dense(1), or dense(2) with "
                    f"{loss.name}",
                )
            )
        if loss.activation is not None and node.op.op == loss.activation:
            diags.append(_fused_twice(node, loss.name, loss.activation))
    return diags


def _inputs_as_targets(net: Network, layers: dict[str, LayerInfo]) -> list[Diagnostic]:
    """`targets = inputs`: one float input, reconstructed by one output of its shape."""
    assert net.train is not None
    out = net.node(net.outputs[-1])
    loss = LOSSES[net.train.loss]
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        why = f"{len(net.inputs)} inputs and {len(net.outputs)} outputs"
        return [_error(out, f"targets = inputs needs one input and one output; {why}")]
    if loss.task == "classification":
        return [
            _error(
                out,
                f"targets = inputs trains the output to give back the input, but {loss.name} "
                "scores classes",
                "use loss = mse (or binary_cross_entropy on inputs in [0, 1])",
            )
        ]
    inp = net.inputs[0]
    if str(getattr(inp.op, "dtype", "float32")).startswith("int"):
        return [_error(inp, f"targets = inputs needs a float input; '{inp.name}' holds ids")]
    shapes = [layers[n].output_shape if n in layers else None for n in (inp.name, out.name)]
    if None not in shapes and shapes[0] != shapes[1]:
        return [
            _error(
                out,
                f"targets = inputs needs the output '{out.name}' shaped like the input "
                f"'{inp.name}': {list(shapes[1] or ())} is not {list(shapes[0] or ())}",
                "end the decoder with the input's shape",
            )
        ]
    return []


def _fused_twice(node: Node, loss: str, activation: str) -> Diagnostic:
    """A network that ends with the activation its loss already fuses in."""
    if activation == "softmax":
        return _error(
            node,
            f"{loss} is applied after an explicit softmax ('{node.name}'): it would apply "
            "softmax twice",
            f"remove the final softmax: {loss} fuses it (numerically stable), and export adds "
            "it back unless --logits",
        )
    return _error(
        node,
        f"{loss} is applied after an explicit {activation} ('{node.name}')",
        f"remove the final {activation}: the loss fuses it",
    )
