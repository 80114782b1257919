"""Run an analysed network forward and backward by calling each node's op, in topological order.

The executor knows no op names: every node is `op.forward` on the arrays of its inputs and
`op.backward` on the gradient of its output. Where a tensor feeds several nodes (a residual
shortcut, inception branches) the gradients arriving from each consumer are summed. Its one
rewrite, asked for by flags on the ops, runs relu after the max pool it feeds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.engine.allocator import keep_freed_memory
from netspec.ir import Analysis, Node
from netspec.ops.base import Array, Ctx, Params

# Every step reallocates the same large arrays: keep them in the process instead of
# page-faulting them back in. Set at import, before a run loads its data and weights: set
# later, the switch from mmap to the heap fragments it (LeNet b256: +4.6 MiB peak, none early).
keep_freed_memory()


def trainable_names(analysis: Analysis) -> list[str]:
    """Global names (`node.local`) of every trainable array, sorted."""
    return sorted(
        f"{name}.{local}" for name, info in analysis.layers.items() for local in info.param_shapes
    )


def state_names(analysis: Analysis) -> list[str]:
    """Global names of every non-trainable state array (running statistics), sorted."""
    return sorted(
        f"{name}.{local}" for name, info in analysis.layers.items() for local in info.state_shapes
    )


def activations_after_max(
    plan: list[Node], outputs: Sequence[str], stateless: set[str]
) -> list[Node]:
    """Run an activation that commutes with max after the max pool it alone feeds.

    relu -> maxpool(2) becomes maxpool(2) -> relu: the same values and gradients (see
    Op.commutes_with_max), with the activation's forward and backward on a quarter of the
    data. The pool takes the activation's name and the activation the pool's, so every other
    node still finds its inputs; both must be `stateless` (no parameters, no running state),
    so that no weight is looked up under the other's name.
    """
    consumers: dict[str, list[Node]] = {}
    for node in plan:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node)
    moved: set[str] = set()
    out: list[Node] = []
    for node in plan:
        if node.name in moved:
            continue
        readers = consumers.get(node.name, [])
        pool = readers[0] if len(readers) == 1 else None
        if (
            pool is not None
            and node.op.commutes_with_max
            and pool.op.takes_max
            and pool.inputs == (node.name,)
            and node.name not in outputs
            and {node.name, pool.name} <= stateless
        ):
            out.append(_renamed(pool, node.name, node.inputs))
            out.append(_renamed(node, pool.name, (node.name,)))
            moved.add(pool.name)
        else:
            out.append(node)
    return out


def _renamed(node: Node, name: str, inputs: tuple[str, ...]) -> Node:
    """The node under another name and inputs, built (and so validated) as a new Node."""
    return Node(name=name, op=node.op, inputs=inputs, span=node.span, scope=node.scope)


@dataclass
class Tape:
    """What a forward pass leaves for backward: each differentiable node's cache."""

    caches: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Step:
    node: Node
    locals: tuple[str, ...]  # param and state names the op sees
    trainable: tuple[str, ...]  # the subset that gets gradients
    needs_grad: bool  # a trainable array at or upstream of this node
    input_grad: bool  # some input needs a gradient: its op's backward must compute it
    is_input: bool
    fixed: bool = False  # frozen with running statistics: runs as in inference (see freezing)


class Executor:
    """Forward and backward over an `Analysis`; parameters are passed in, never stored."""

    def __init__(
        self,
        analysis: Analysis,
        dtype: npt.DTypeLike = np.float32,
        *,
        reorder: bool = True,
        frozen: Collection[str] = (),
    ) -> None:
        """`frozen` layers (by node name, netspec.freezing) get no gradients of their own."""
        self.dtype = np.dtype(dtype)
        self.outputs = analysis.network.outputs
        nodes = {n.name: n for n in analysis.network.nodes}
        plan = [nodes[name] for name in analysis.order]
        if reorder:
            stateless = {
                name
                for name, info in analysis.layers.items()
                if not info.param_shapes and not info.state_shapes
            }
            plan = activations_after_max(plan, self.outputs, stateless)
        self.steps: list[_Step] = []
        needs: dict[str, bool] = {}
        for node in plan:
            name = node.name
            info = analysis.layers[name]
            trainable = () if name in frozen else tuple(info.param_shapes)
            needs[name] = bool(trainable) or any(needs[i] for i in node.inputs)
            self.steps.append(
                _Step(
                    node=node,
                    locals=(*info.param_shapes, *info.state_shapes),
                    trainable=trainable,
                    needs_grad=needs[name],
                    input_grad=any(needs[i] for i in node.inputs),
                    is_input=not node.inputs and node.op.arity == 0,
                    fixed=name in frozen and bool(info.state_shapes),
                )
            )
        # Index of the last step that reads each tensor, so forward can drop it afterwards.
        self._last_use: dict[str, int] = {}
        for k, step in enumerate(self.steps):
            for i in step.node.inputs:
                self._last_use[i] = k

    def _slice(self, step: _Step, params: Params) -> Params:
        name = step.node.name
        return {local: params[f"{name}.{local}"] for local in step.locals}

    def _cast(self, x: Array) -> Array:
        # Integer inputs are indices (embedding): pass them through unconverted.
        if np.issubdtype(x.dtype, np.integer):
            return x
        return np.asarray(x, dtype=self.dtype)

    def forward(
        self, inputs: dict[str, Array], params: Params, ctx: Ctx, record: bool = True
    ) -> tuple[dict[str, Array], Tape]:
        """Outputs by output name, and a tape of caches for `backward`; without `record`
        (inference) the tape stays empty and each cache is freed with its step."""
        values: dict[str, Array] = {}
        tape = Tape()
        first_layer_ctx = replace(ctx, input_grad=False)
        # A step whose cache no backward reads (inference, or nothing to differentiate).
        no_back = (replace(ctx, backward=False), replace(first_layer_ctx, backward=False))
        for k, step in enumerate(self.steps):
            name = step.node.name
            if step.is_input:
                values[name] = self._cast(inputs[name])
                continue
            xs = [values[i] for i in step.node.inputs]
            if record and step.needs_grad:
                step_ctx = ctx if step.input_grad else first_layer_ctx
            else:
                step_ctx = no_back[0] if step.input_grad else no_back[1]
            if step.fixed and ctx.train:
                step_ctx = replace(step_ctx, train=False)
            y, cache = step.node.op.forward(xs, self._slice(step, params), step_ctx)
            values[name] = y
            if step.needs_grad and record:
                tape.caches[name] = cache
            del cache
            for i in set(step.node.inputs):
                if self._last_use[i] == k and i not in self.outputs:
                    del values[i]  # the consumers' caches keep what backward needs
        return {o: values[o] for o in self.outputs}, tape

    def backward(self, tape: Tape, doutputs: dict[str, Array], params: Params) -> dict[str, Array]:
        """Gradients of every trainable array, by global name; consumes the tape's caches.

        An output missing from `doutputs` contributes no gradient; an array that no gradient
        reaches gets zeros, so an optimizer always sees every trainable name.
        """
        grads: dict[str, Array] = {o: d for o, d in doutputs.items()}
        out: dict[str, Array] = {}
        for step in reversed(self.steps):
            name = step.node.name
            cache = tape.caches.pop(name, None)
            dy = grads.pop(name, None)
            if step.is_input or not step.needs_grad or dy is None:
                continue
            p = self._slice(step, params)
            dxs, dparams = step.node.op.backward(dy, cache, p)
            del cache, dy
            for local in step.trainable:
                out[f"{name}.{local}"] = dparams[local]
            for i, dx in zip(step.node.inputs, dxs, strict=True):
                if dx is None:
                    continue
                # Out of place: ops may hand back one array for several inputs (add).
                grads[i] = grads[i] + dx if i in grads else dx
        for step in self.steps:
            for local in step.trainable:
                key = f"{step.node.name}.{local}"
                if key not in out:
                    out[key] = np.zeros_like(params[key])
        return out
