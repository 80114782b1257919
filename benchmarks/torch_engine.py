"""netspec's torch engine against a hand-written PyTorch training loop of the same network.

Both sides start from netspec's initial weights on the same device and take the same steps on
the same batch: forward, softmax cross-entropy, backward and SGD momentum (lr 0, as run.py's
training section: the arithmetic is done, the weights stay put). netspec's side is
`TorchTrainer.loss` + `update` as the training loop calls them (the lowered torch.fx module,
netspec's loss and its shared optimizer formulas), on a batch indexed out of the device-held
features (DeviceData); the reference is `twin.Twin` (plain nn.Module code), F.cross_entropy and
torch.optim.SGD, on a batch indexed out of the same tensor. `precision="bf16"` autocasts both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from twin import Twin
from workloads import LR, MU, batch_of, fresh_params

from netspec.ir import Analysis
from netspec.recipe import Momentum, TrainSpec
from netspec.torch.trainer import TorchTrainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_step(
    analysis: Analysis, batch: int, device: str = "cpu", precision: str = "fp32"
) -> Callable[[], float]:
    """One step of netspec's torch engine, as training.loop runs it."""
    spec = TrainSpec(
        network=analysis.network.name,
        loss="cross_entropy",
        optimizer=Momentum(lr=0.01, momentum=MU),  # update() is given LR itself
        batch=batch,
    )
    seeds = np.random.default_rng(0)
    trainer = TorchTrainer(analysis, spec, seeds, seeds, device=device, precision=precision)
    trainer.params = fresh_params(analysis)
    x, y = batch_of(analysis, batch)
    held = trainer.resident(x)
    index = np.arange(batch)

    def step() -> float:
        value, _ = trainer.loss(held[index], y)
        trainer.update(LR)
        return value

    return step


@contextlib.contextmanager
def _autocast(device: torch.device, precision: str) -> Iterator[None]:
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype):
        yield


def reference_step(
    analysis: Analysis, batch: int, device: str = "cpu", precision: str = "fp32"
) -> Callable[[], float]:
    """The same step as anyone would write it in PyTorch."""
    where = torch.device(device)
    model = Twin(analysis, fresh_params(analysis)).to(where).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MU)
    x, y = batch_of(analysis, batch)
    tx, ty = torch.from_numpy(x).to(where), torch.from_numpy(y).to(where)
    index = torch.arange(batch, device=where)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with _autocast(where, precision):
            out = model(tx[index])
        loss = F.cross_entropy(out.float(), ty[index])
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def synced(step: Callable[[], float], device: str) -> Callable[[], Any]:
    """A step that returns only once the device is done (both sides read the loss, which
    synchronises already; this makes it explicit for timing)."""
    where = torch.device(device)

    def run() -> float:
        value = step()
        _sync(where)
        return value

    return run
