"""Every network in specs/ and examples/, lowered to torch, computes what the NumPy executor
computes (float64, eval mode, random weights and batchnorm statistics); for a CNN, ResNet
blocks and recurrent nets the gradients of a loss over every parameter agree too (train mode:
batch statistics, and the running statistics moved alike)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netspec.engine.executor import Executor
from netspec.ir import Analysis
from netspec.ops.base import Array, Ctx
from netspec.torch import lower, params_of

from .nets import (
    LIBRARY,
    ROOT,
    analysis_of,
    analysis_text,
    as_tensors,
    calibrated,
    inputs,
    weights,
)

# Networks of over 10M parameters or 1 GMAC per sample (and ResNet-1202's 4,211 layers): run by
# `make test` too, left out by -m "not slow".
SLOW = {"alexnet", "googlenet", "resnet18", "resnet50", "resnet152", "resnet1202", "vgg16", "vgg19"}


def _param(path: Path) -> object:
    marks = [pytest.mark.slow] if path.stem in SLOW else []
    return pytest.param(path, id=f"{path.parent.name}/{path.stem}", marks=marks)


def assert_close(got: Array, want: Array, what: str, tol: float = 1e-9) -> None:
    """Within tol of the output's scale (elementwise ratios of values near 0 mean nothing)."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() <= tol * scale, f"{what}: {np.abs(got - want).max()}"


@pytest.mark.parametrize("path", [_param(p) for p in LIBRARY])
def test_the_lowered_network_computes_the_numpy_executors_outputs(path: Path) -> None:
    analysis = analysis_of(path)
    batch = 1 if path.stem in SLOW else 2
    params, xs = weights(analysis), inputs(analysis, batch)
    want, _ = Executor(analysis, np.float64).forward(xs, params, Ctx(train=False))
    if max(np.abs(y).max() for y in want.values()) > 1e6:  # random statistics blew it up
        calibrated(analysis, params, xs)
        want, _ = Executor(analysis, np.float64).forward(xs, params, Ctx(train=False))
    module = lower(analysis, params)
    assert set(params_of(module)) == set(params)  # the state dict is netspec's names
    module.eval()
    with torch.no_grad():
        got = module(*as_tensors(analysis, xs))
    assert isinstance(got, tuple) and len(got) == len(analysis.network.outputs)
    for name, tensor in zip(analysis.network.outputs, got, strict=True):
        assert np.isfinite(want[name]).all() and 0 < np.abs(want[name]).max() <= 1e6, name
        assert_close(tensor.numpy(), want[name], name)


# ---- gradients -------------------------------------------------------------------------------

RESNET_BLOCK = """
network Block {
  input x: [4, 6, 6]
  stem = conv2d(6, 3, padding=1, bias=false)
  bn0 = batchnorm(momentum=0.3)
  act0 = relu
  conv1 = conv2d(8, 3, stride=2, padding=1, bias=false)
  bn1 = batchnorm
  relu
  conv2 = conv2d(8, 3, padding=1, bias=false)
  bn2 = batchnorm
  proj = act0 -> conv2d(8, 1, stride=2, bias=false) batchnorm
  add(bn2, proj)
  relu
  global_avgpool
  flatten
  dense(3)
}
"""

LSTM = """
network Lstm {
  input tokens: int64[6]
  embedding(12, 5)
  lstm(4, return_sequences=true)
  lstm(3)
  dense(2)
}
"""

GRU = """
network Gru {
  input x: [5, 3]
  gru(4, return_sequences=true)
  gru(3)
  dense(2)
}
"""

BILSTM = """
network BiLstm {
  input x: [5, 3]
  bidirectional(lstm(4, return_sequences=true))
  bidirectional(lstm(3))
  dense(2)
}
"""

GRADIENT_NETS = {
    "digits_cnn": lambda: analysis_of(ROOT / "examples" / "digits_cnn.net"),
    "resnet_block": lambda: analysis_text(RESNET_BLOCK),
    "resnet20": lambda: analysis_of(ROOT / "specs" / "resnet20.net"),
    "lstm": lambda: analysis_text(LSTM),
    "gru": lambda: analysis_text(GRU),
    "bilstm": lambda: analysis_text(BILSTM),
}


def _numpy_grads(
    analysis: Analysis, params: dict[str, Array], xs: dict[str, Array], r: dict[str, Array]
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Outputs and the gradients of L = sum(output * r) by the executor, in training mode."""
    ex = Executor(analysis, np.float64)
    outs, tape = ex.forward(xs, params, Ctx(train=True))
    return outs, ex.backward(tape, r, params)


@pytest.mark.parametrize("net", sorted(GRADIENT_NETS))
def test_autograd_through_the_lowered_network_gives_the_executors_gradients(net: str) -> None:
    analysis = GRADIENT_NETS[net]()
    params, xs = weights(analysis), inputs(analysis, batch=4)
    module = lower(analysis, params)  # copies: the executor moves `params`' statistics below
    rng = np.random.default_rng(2)
    outs_shape = {o: (4, *analysis.shape(o)) for o in analysis.network.outputs}
    r = {o: rng.normal(size=s) for o, s in outs_shape.items()}
    want, grads = _numpy_grads(analysis, params, xs, r)

    module.train()
    got = module(*as_tensors(analysis, xs))
    loss = sum((t * torch.from_numpy(r[o])).sum() for o, t in zip(want, got, strict=True))
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    for o, t in zip(want, got, strict=True):
        assert_close(t.detach().numpy(), want[o], f"output {o}")
    named = dict(module.named_parameters())
    assert set(named) == set(grads)
    for name, p in named.items():
        assert p.grad is not None, name
        assert_close(p.grad.numpy(), grads[name], f"gradient of {name}")
    for name, b in module.named_buffers():  # running statistics, moved by both
        assert_close(b.numpy(), params[name], name)
