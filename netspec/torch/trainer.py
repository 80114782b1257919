"""The torch engine's side of a training run (training.contracts.Trainer): the lowered network
(netspec.torch.lower), the recipe's loss, autograd, the l1/l2 penalty, gradient clipping and the
optimizer's update, on a CPU or a CUDA device.

Same start and data order as the NumPy engine: the weights come from netspec's initialiser
(`init_params` on the run's init stream) and the loop picks the batches, so the two engines
differ only by arithmetic. What differs by design: dropout and rrelu draw torch's random
numbers, not NumPy's; to keep a run repeatable and resumable, a network with such an op seeds
torch from the loop's generator before each step (so its shuffling, too, departs from a NumPy
run's after the first draw; a network without one never draws, and shuffles exactly as NumPy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.freezing import fixed_statistics, frozen_arrays
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.memory import eval_chunk
from netspec.ops.base import Array, Params
from netspec.recipe import TrainSpec
from netspec.torch.losses import TORCH_LOSSES, target_tensor
from netspec.torch.lower import freeze, load_params, lower, params_of
from netspec.torch.optimizers import make_optimizer
from netspec.torch.speed import (
    Mixed,
    autocast_dtype,
    compile_errors,
    compile_failed,
    compiled,
    resident,
)
from netspec.training.contracts import FitResult
from netspec.training.loop import fit as run_fit
from netspec.training.plan import io_of, penalised_names

EVAL_BATCH = 1024  # samples per inference pass, as the NumPy engine
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """`auto` is the GPU when torch sees one, else the CPU; `cuda` without one is an error,
    never a silent CPU run."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise NetspecError.at(
            f"unknown device '{name}'", hint="use auto, cpu or cuda", exit_code=EXIT_USAGE
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        why = (
            "this PyTorch build has no CUDA support"
            if torch.version.cuda is None
            else "PyTorch sees no CUDA GPU"
        )
        raise NetspecError.at(
            f"--device {name}: {why}",
            hint="run with --device cpu, or install a CUDA build of PyTorch "
            "(https://pytorch.org/get-started/locally/) on a machine with an NVIDIA GPU",
            exit_code=EXIT_RUNTIME,
        )
    return torch.device(name)


def describe(device: torch.device) -> str:
    """`cpu`, or `cuda:0 (NVIDIA H200)`: what a run reports it ran on."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _torch_dtype(dtype: npt.DTypeLike) -> torch.dtype:
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


class TorchTrainer:
    """Weights (the lowered module's), optimizer and one training step of the torch engine."""

    engine = "torch"

    def __init__(
        self,
        analysis: Analysis,
        spec: TrainSpec,
        init_rng: np.random.Generator,
        rng: np.random.Generator,
        *,
        device: str = "auto",
        dtype: npt.DTypeLike = np.float32,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if spec.perceptron_rule:
            raise NetspecError.at(
                "perceptron_rule trains on the NumPy engine only",
                hint="drop --engine torch (the NumPy engine is the default)",
                exit_code=EXIT_USAGE,
            )
        self.spec = spec
        self.io = io_of(analysis)
        self.loss_meta = LOSSES[spec.loss]
        self.loss_fn = TORCH_LOSSES[spec.loss]
        self.torch_device = resolve_device(device)
        self.device = describe(self.torch_device)
        self.dtype = _torch_dtype(dtype)
        start = init_params(analysis, init_rng, dtype)
        self.model = lower(analysis, start, device=self.torch_device)
        self.model.train()
        # What runs the forward: the lowered module, or it wrapped (DistributedDataParallel,
        # torch.compile); the weights are always the lowered module's own.
        self.compile = compile
        self.net: torch.nn.Module = compiled(self.model) if compile else self.model
        self.trainable = freeze(self.model, frozen_arrays(analysis), fixed_statistics(analysis))
        self.mixed = Mixed(precision, self.torch_device, self.dtype, list(self.trainable.values()))
        if precision != "fp32":
            self.device += f", {precision} autocast"
        self.penalised = [n for n in penalised_names(analysis) if n in self.trainable]
        self.optimizer = make_optimizer(spec.optimizer)
        self.chunk = eval_chunk(analysis, spec.batch, EVAL_BATCH)
        self.rng = rng
        self.random = any(node.op.random for node in analysis.network.nodes)
        self._pending: torch.Tensor | None = None

    @property
    def params(self) -> Params:
        """Every weight and running statistic as NumPy arrays (copies) by global name."""
        return params_of(self.model)

    @params.setter
    def params(self, value: Params) -> None:
        load_params(self.model, value)

    def resident(self, x: Any) -> Any:
        """The training features held on the device once (the loop indexes them per batch)."""
        return resident(x, self.torch_device, self.dtype)

    def _input(self, x: Array | torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor):  # a batch of DeviceData: on the device, in its dtype
            return x
        t = torch.as_tensor(np.asarray(x), device=self.torch_device)
        return t.long() if self.io.input_dtype == "int64" else t.to(self.dtype)

    def _reseed(self) -> None:
        """Dropout's masks follow the run's seed and its checkpointed stream."""
        torch.manual_seed(int(self.rng.integers(2**63)))

    def _forward(self, x: Array, y: Array) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean data loss (a graph to differentiate) and the outputs."""
        if self.random:
            self._reseed()
        with self.mixed.autocast():
            try:
                (out,) = self.net(self._input(x))
            except compile_errors() as e:
                if not self.compile:
                    raise
                raise compile_failed(e) from None
        out = out.to(self.dtype)  # the loss in full precision
        return self.loss_fn(out, target_tensor(self.loss_meta, y, out)), out

    def loss(self, x: Array, y: Array) -> tuple[float, Array]:
        value, out = self._forward(x, y)
        self._pending = value
        return float(value.detach()), out.detach().cpu().numpy()

    def update(self, lr: float) -> None:
        assert self._pending is not None, "update() follows loss()"
        value, self._pending = self._pending, None
        self.model.zero_grad(set_to_none=True)
        self.mixed.backward_and_step(value, self._apply, lr)

    def _apply(self, lr: float) -> None:
        """The (unscaled) gradients' penalties and clipping, then the optimizer's step."""
        grads = {
            name: p.grad if p.grad is not None else torch.zeros_like(p)
            for name, p in self.trainable.items()
        }
        spec = self.spec
        with torch.no_grad():
            if spec.l1 or spec.l2:
                _add_penalty(self.trainable, grads, self.penalised, spec.l1, spec.l2)
            if spec.clip_norm is not None:
                _clip(grads, spec.clip_norm)
            self.optimizer.step(self.trainable, grads, lr)

    @torch.no_grad()
    def predict(self, x: Array) -> Array:
        """Raw outputs in inference mode, in the NumPy engine's bounded chunks (memory.eval_chunk:
        validation takes no more memory than a training step, which --max-memory checked)."""
        self.model.eval()
        try:
            outs = [
                self.model(self._input(x[i : i + self.chunk]))[0].cpu().numpy()
                for i in range(0, len(x), self.chunk)
            ]
        finally:
            self.model.train()
        return np.concatenate(outs)

    def optimizer_state(self) -> dict[str, Array]:
        return self.optimizer.state_dict()

    def restore(self, params: Params, optimizer_state: dict[str, Array]) -> None:
        load_params(self.model, params)  # in place: the Parameter objects stay
        self.optimizer.load_state_dict(optimizer_state, self.trainable)


def _add_penalty(
    params: Mapping[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    names: list[str],
    l1: float,
    l2: float,
) -> None:
    """engine/penalties.add_penalty's gradient: l1 sign(w) + 2 l2 w, on weights only."""
    for name in names:
        w = params[name]
        if l1:
            grads[name] = grads[name] + l1 * torch.sign(w)
        if l2:
            grads[name] = grads[name] + 2 * l2 * w


def _clip(grads: dict[str, torch.Tensor], max_norm: float) -> None:
    """engine/penalties.clip: one factor for every gradient, global L2 norm at most max_norm."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for name in grads:
            grads[name] = grads[name] * scale


def fit(
    analysis: Analysis,
    spec: TrainSpec,
    out_dir: Path,
    *,
    device: str = "auto",
    dtype: npt.DTypeLike = np.float32,
    precision: str = "fp32",
    compile: bool = False,
    **options: Any,
) -> FitResult:
    """training.loop.fit on the torch engine in this process (options as there);
    netspec.torch.run.fit adds --nproc and torchrun."""
    torch_device = resolve_device(device)  # refused before the data are read
    autocast_dtype(precision, torch_device, _torch_dtype(dtype))
    kw = {"device": device, "dtype": dtype, "precision": precision, "compile": compile}

    def make(
        analysis: Analysis, spec: TrainSpec, init_rng: np.random.Generator, rng: np.random.Generator
    ) -> TorchTrainer:
        return TorchTrainer(analysis, spec, init_rng, rng, **kw)  # type: ignore[arg-type]

    return run_fit(analysis, spec, out_dir, make, **options)
