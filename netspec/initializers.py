"""Initial values of every trainable and state array of an analysed network.

Default rules (the user's `init=` on an op overrides them for its weights):

- state arrays: `op.initial_state` (running mean 0, running variance 1);
- arrays an op fixes itself via `op.initial_param` (prelu slope 0.25, batchnorm weight 1);
- biases (`bias`, `bias_ih`, `fwd.bias_hh`, ...): zeros;
- embedding tables: normal(0, 1), as PyTorch does;
- other weights: He/MSRA normal, std = sqrt(2 / fan_in) (He et al. 2015), when the node's output
  feeds a relu-family activation (seen through batchnorm and dropout), since relu halves the
  variance; otherwise Glorot/Xavier uniform, limit = sqrt(6 / (fan_in + fan_out)) (Glorot &
  Bengio 2010), which suits tanh/sigmoid and linear outputs.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from netspec.ir import Analysis, Node
from netspec.ops.base import Array, Op, Shape
from netspec.ops.init import Init


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight laid out (out, in, *kernel), as PyTorch computes them."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def sample(init: Init, shape: Shape, fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """Draw one array from a named initialiser (float64; the caller casts)."""
    match init.name:
        case "he_normal":
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        case "he_uniform":
            limit = math.sqrt(6.0 / fan_in)
            return rng.uniform(-limit, limit, shape)
        case "glorot_uniform":
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, shape)
        case "glorot_normal":
            return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
        case "normal":
            return rng.normal(0.0, init.std, shape)
        case "uniform":
            return rng.uniform(init.low, init.high, shape)
        case "zeros":
            return np.zeros(shape)
        case "constant":
            return np.full(shape, init.value)
    raise AssertionError(f"unhandled initialiser {init.name}")


def consumers_of(analysis: Analysis) -> dict[str, list[Node]]:
    """The nodes reading each tensor."""
    consumers: dict[str, list[Node]] = {}
    for node in analysis.network.nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node)
    return consumers


def feeds_relu(consumers: dict[str, list[Node]], name: str) -> bool:
    """Whether a node's output reaches a relu-family activation, seeing through norm/dropout."""
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        for node in consumers.get(current, []):
            if node.op.rectifier:
                return True
            if node.op.init_transparent and node.name not in seen:
                seen.add(node.name)
                todo.append(node.name)
    return False


def _weight_fans(local: str, shape: Shape, siblings: dict[str, Shape]) -> tuple[int, int]:
    # Recurrent weights stack G gates of H rows: (G*H, F) and (G*H, H). Per gate, fan_in = F
    # and fan_out = H; H is read from the sibling weight_hh, so no op name is needed.
    prefix, _, last = local.rpartition(".")
    if last.startswith(("weight_ih", "weight_hh")):
        hh = siblings.get(f"{prefix}.weight_hh" if prefix else "weight_hh")
        if hh is not None and len(shape) == 2:
            return shape[1], hh[1]
    return fans(shape)


def _is_bias(local: str) -> bool:
    return local.rpartition(".")[2].startswith("bias")


def init_params(
    analysis: Analysis, rng: np.random.Generator, dtype: npt.DTypeLike = np.float32
) -> dict[str, Array]:
    """Every trainable and state array by global name, drawn in sorted name order."""
    nodes = {n.name: n for n in analysis.network.nodes}
    entries: dict[str, tuple[str, str, Shape, bool]] = {}
    for name, info in analysis.layers.items():
        for local, shape in info.param_shapes.items():
            entries[f"{name}.{local}"] = (name, local, shape, True)
        for local, shape in info.state_shapes.items():
            entries[f"{name}.{local}"] = (name, local, shape, False)
    consumers = consumers_of(analysis)
    params: dict[str, Array] = {}
    for key in sorted(entries):
        name, local, shape, trainable = entries[key]
        op = nodes[name].op
        if not trainable:
            value = op.initial_state(local, shape)
        else:
            value = _initial_param(analysis, consumers, op, name, local, shape, rng)
        params[key] = np.asarray(value, dtype=dtype).reshape(shape)
    return params


def _initial_param(
    analysis: Analysis,
    consumers: dict[str, list[Node]],
    op: Op,
    name: str,
    local: str,
    shape: Shape,
    rng: np.random.Generator,
) -> Array:
    fixed = getattr(op, "initial_param", None)
    if fixed is not None:
        value = fixed(local, shape)
        if value is not None:
            return np.asarray(value)
    if _is_bias(local):
        return np.zeros(shape)
    fan_in, fan_out = _weight_fans(local, shape, analysis.layers[name].param_shapes)
    hint = op.init_hint()
    if hint is not None:
        return sample(hint, shape, fan_in, fan_out, rng)
    if op.default_init is not None:
        return sample(op.default_init, shape, fan_in, fan_out, rng)
    default = Init(name="he_normal" if feeds_relu(consumers, name) else "glorot_uniform")
    return sample(default, shape, fan_in, fan_out, rng)
