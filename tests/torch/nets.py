"""Networks, weights and inputs shared by the torch tests, each built once per session."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from netspec import api
from netspec.engine.executor import Executor
from netspec.initializers import init_params
from netspec.ir import Analysis, Network
from netspec.ops.base import Array, Ctx

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted([*(ROOT / "specs").glob("*.net"), *(ROOT / "examples").glob("*.net")])


@cache
def analysis_of(path: Path) -> Analysis:
    return api.check(api.load(path))


@cache
def analysis_text(text: str) -> Analysis:
    return api.check(api.load(Path("t.net"), text=text))


def weights(analysis: Analysis, seed: int = 0) -> dict[str, Array]:
    """netspec's initial weights in float64, with running statistics away from (0, 1), so that
    eval-mode batchnorm is not the identity."""
    rng = np.random.default_rng(seed)
    params = init_params(analysis, rng, dtype=np.float64)
    for name, info in analysis.layers.items():
        for local, shape in info.state_shapes.items():
            low, high = (0.5, 2.0) if "var" in local else (-0.5, 0.5)
            params[f"{name}.{local}"] = rng.uniform(low, high, size=shape)
    return params


def inputs(analysis: Analysis, batch: int, seed: int = 1) -> dict[str, Array]:
    """float64 inputs; token ids within the vocabulary of every embedding they feed."""
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for node in analysis.network.inputs:
        shape = (batch, *analysis.shape(node.name))
        if getattr(node.op, "dtype", "float32") == "int64":
            vocab = min(
                n.op.vocab  # type: ignore[attr-defined]
                for n in analysis.network.nodes
                if node.name in n.inputs and hasattr(n.op, "vocab")
            )
            out[node.name] = rng.integers(0, vocab, size=shape)
        else:
            out[node.name] = rng.normal(size=shape)
    return out


def numpy_forward(
    analysis: Analysis, params: dict[str, Array], xs: dict[str, Array], train: bool = False
) -> dict[str, Array]:
    """The NumPy executor's outputs in float64 (it updates `params`' running statistics)."""
    outs, _ = Executor(analysis, np.float64).forward(xs, params, Ctx(train=train))
    return outs


def as_tensors(analysis: Analysis, xs: dict[str, Array]) -> list[torch.Tensor]:
    """The inputs in declaration order, as the lowered module takes them."""
    return [torch.from_numpy(xs[n.name]) for n in analysis.network.inputs]


def calibrated(analysis: Analysis, params: dict[str, Array], xs: dict[str, Array]) -> None:
    """Set every running mean and variance to those of the activations of `xs`, as after
    training: one training pass of a copy of the network whose batchnorms have momentum 1.
    For ResNet-1202, whose 600 blocks blow random statistics up to 1e55."""
    data = analysis.network.model_dump()
    for node in data["nodes"]:
        if node["op"]["op"] == "batchnorm":
            node["op"]["momentum"] = 1.0
    copy = api.check(Network.model_validate(data))
    Executor(copy, np.float64).forward(xs, params, Ctx(train=True))
