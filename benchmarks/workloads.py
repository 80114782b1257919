"""The benchmark's networks and the two training steps (netspec's NumPy engine, PyTorch CPU).

Both sides start from the same weights (netspec's initialiser, copied into `twin.Twin`), see
the same batch, and run forward, softmax cross-entropy, backward and one SGD-momentum update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec import api
from netspec.engine.executor import Executor, trainable_names
from netspec.engine.optimizers import Momentum
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.ops.base import Ctx

ROOT = Path(__file__).resolve().parent.parent
# lr = 0: the update is still computed in full (both engines do the arithmetic), but the weights
# stay put. Thousands of steps on one batch would otherwise drive the loss to 0 and the
# gradients into float32 denormals, which are ~100x slower on x86 and time nothing useful.
LR, MU = 0.0, 0.9

MLP = """
network MLP {
  input x: [784]
  dense(256) relu
  dense(128) relu
  dense(10)
}
"""

LENET = """
network LeNet {
  input image: [1, 28, 28]
  conv2d(6, 5, padding=2) relu
  maxpool2d(2)
  conv2d(16, 5) relu
  maxpool2d(2)
  flatten
  dense(120) relu
  dense(84) relu
  dense(10)
}
"""

LSTM = """
network LSTM {
  input seq: [32, 32]
  lstm(128)
  dense(10)
}
"""


@dataclass(frozen=True)
class Workload:
    name: str
    source: str  # spec text, or a path under specs/
    batch: int
    target: float  # the bound on netspec / torch for a training step

    def analysis(self) -> Analysis:
        if self.source.startswith("specs/"):
            return api.check(api.load(ROOT / self.source))
        return api.check(api.load(f"{self.name}.net", text=self.source))


TRAINING = (
    Workload("mlp_b64", MLP, 64, 0.5),
    Workload("mlp_b256", MLP, 256, 0.5),
    Workload("lenet_b64", LENET, 64, 0.8),
    Workload("lenet_b256", LENET, 256, 0.8),
    Workload("cifar10_cnn_b64", "specs/cifar10_cnn.net", 64, 0.9),
    Workload("lstm_b64", LSTM, 64, 1.0),
    Workload("resnet20_b32", "specs/resnet20.net", 32, 0.9),
    # issue 16: a transformer encoder step and the ViT step, target <= 1.2x PyTorch CPU
    Workload("transformer_encoder_b32", "specs/transformer_encoder.net", 32, 1.2),
    Workload("vit_tiny_b64", "specs/vit_tiny.net", 64, 1.2),
)


def batch_of(analysis: Analysis, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random input batch (float32, or token ids below the smallest embedding's vocabulary)
    and integer labels for the network's one input/output."""
    rng = np.random.default_rng(seed)
    (inp,) = analysis.network.inputs
    (out,) = analysis.network.outputs
    shape = (batch, *analysis.shape(inp.name))
    if str(getattr(inp.op, "dtype", "float32")).startswith("int"):
        vocab = min(getattr(n.op, "vocab", 2**31) for n in analysis.network.nodes)
        x: np.ndarray = rng.integers(0, vocab, shape)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, analysis.shape(out)[-1], size=batch)
    return x, y


def netspec_step(
    analysis: Analysis, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> Callable[[], float]:
    """One training step of the NumPy engine, as the trainer runs it."""
    executor = Executor(analysis, np.float32)
    optimizer = Momentum(0.0, MU)
    loss = LOSSES["cross_entropy"]
    names = trainable_names(analysis)
    ctx = Ctx(train=True, rng=np.random.default_rng(0))
    (inp,) = analysis.network.inputs
    (out,) = analysis.network.outputs

    def step() -> float:
        outs, tape = executor.forward({inp.name: x}, params, ctx)
        value, dout = loss(outs[out], y)
        grads = executor.backward(tape, {out: dout}, params)
        optimizer.step(params, {n: grads[n] for n in names}, LR)
        return value

    return step


def torch_step(
    analysis: Analysis, params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> Callable[[], float]:
    """The same step in PyTorch eager (autograd, `torch.optim.SGD(momentum)`)."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from twin import Twin

    model = Twin(analysis, params).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MU)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tx), ty)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def fresh_params(analysis: Analysis, seed: int = 0) -> dict[str, np.ndarray]:
    return init_params(analysis, np.random.default_rng(seed))
