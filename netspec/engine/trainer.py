"""The NumPy engine's side of a training run (training.contracts.Trainer), and its inference.

One step is the executor's forward pass, the recipe's loss, the backward pass, the l1/l2
penalty, gradient clipping and the optimizer's update, all on arrays that this object owns
(float32; float64 where a test compares engines); or, with ``perceptron_rule``, Rosenblatt's
rule (engine/perceptron.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.engine.executor import Executor, Tape, trainable_names
from netspec.engine.optimizers import make_optimizer
from netspec.engine.penalties import add_penalty, clip
from netspec.engine.perceptron import perceptron_step, require_perceptron
from netspec.errors import EXIT_SPEC, NetspecError
from netspec.freezing import frozen_arrays, frozen_layers
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.memory import eval_chunk
from netspec.ops.base import Array, Ctx, Params
from netspec.recipe import DataSpec, TrainSpec
from netspec.training.contracts import FitResult
from netspec.training.evaluate import Evaluation
from netspec.training.evaluate import evaluate as score_weights
from netspec.training.loop import fit as run_fit
from netspec.training.named import Named, concat
from netspec.training.plan import Io, io_of, penalised_names

EVAL_BATCH = 1024  # the most samples per inference pass (memory.eval_chunk picks fewer)


def _feed(io: Io, x: Any) -> dict[str, Array]:
    return x.arrays if isinstance(x, Named) else {io.input: x}


def predict(executor: Executor, io: Io, params: Params, x: Any, chunk: int = EVAL_BATCH) -> Any:
    """Raw outputs (logits) in inference mode, `chunk` samples at a time (validation takes no
    more memory than a training step, which --max-memory was checked against): one array, or
    Named arrays by output for a network of several."""
    ctx = Ctx(train=False)
    outs = [
        executor.forward(_feed(io, x[i : i + chunk]), params, ctx, False)[0]
        for i in range(0, len(x), chunk)
    ]
    if len(io.outputs) > 1:
        return concat([Named(o) for o in outs])
    return np.concatenate([o[io.output] for o in outs])


class NumpyTrainer:
    """Weights, optimizer and one training step of the NumPy engine."""

    engine = "numpy"
    device = "cpu"

    def __init__(
        self,
        analysis: Analysis,
        spec: TrainSpec,
        init_rng: np.random.Generator,
        rng: np.random.Generator,
        *,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        self.spec = spec
        self.io = io_of(analysis)
        self.loss_fn = LOSSES[spec.loss]
        frozen = frozen_arrays(analysis)  # they take no step (netspec/freezing.py)
        self.executor = Executor(analysis, dtype, frozen=frozen_layers(analysis.network))
        self.chunk = eval_chunk(analysis, spec.batch, EVAL_BATCH)
        self.optimizer = make_optimizer(spec.optimizer)
        self.params: Params = init_params(analysis, init_rng, dtype)
        self.names = [n for n in trainable_names(analysis) if n not in frozen]
        self.penalised = [n for n in penalised_names(analysis) if n not in frozen]
        self.perceptron = require_perceptron(analysis) if spec.perceptron_rule else None
        self.ctx = Ctx(train=True, rng=rng)  # the loop's stream: dropout draws follow shuffling
        # Each output's loss and weight (one output: the recipe's loss, weight 1).
        names = tuple(p.name for p in self.io.outputs)
        self.losses = {o: (LOSSES[n], w) for o, (n, w) in spec.output_losses(names).items()}
        if self.perceptron is not None and self.io.several:
            raise NetspecError.at(
                "perceptron_rule trains a network of one input and one output",
                exit_code=EXIT_SPEC,
            )
        self._pending: tuple[Tape, dict[str, Array], Any, Any] | None = None

    def loss(self, x: Any, y: Any) -> tuple[float, Any]:
        out, tape = self.executor.forward(_feed(self.io, x), self.params, self.ctx)
        if len(self.io.outputs) == 1:
            y_hat = out[self.io.output]
            value, dout = self.loss_fn(y_hat, y)
            self._pending = (tape, {self.io.output: dout}, y_hat, y)
            return value, y_hat
        value, douts = 0.0, {}
        for name, (loss_fn, weight) in self.losses.items():
            part, d = loss_fn(out[name], y.arrays[name])
            value += weight * part
            douts[name] = d * np.float32(weight) if weight != 1 else d
        self._pending = (tape, douts, None, y)
        return value, Named(out)

    def update(self, lr: float) -> None:
        assert self._pending is not None, "update() follows loss()"
        tape, douts, y_hat, y = self._pending
        self._pending = None
        if self.perceptron is not None:
            perceptron_step(self.executor, tape, self.params, self.io.output, y_hat, y, lr)
            return
        grads = self.executor.backward(tape, douts, self.params)
        del tape
        spec = self.spec
        if spec.l1 or spec.l2:
            add_penalty(self.params, grads, self.penalised, spec.l1, spec.l2)
        if spec.clip_norm is not None:
            clip(grads, spec.clip_norm)
        self.optimizer.step(self.params, {name: grads[name] for name in self.names}, lr)

    def predict(self, x: Any) -> Any:
        return predict(self.executor, self.io, self.params, x, self.chunk)

    def optimizer_state(self) -> dict[str, Array]:
        return self.optimizer.state_dict()

    def restore(self, params: Params, optimizer_state: dict[str, Array]) -> None:
        self.params = params
        self.optimizer.load_state_dict(optimizer_state, {n: params[n] for n in self.names})


def fit(analysis: Analysis, spec: TrainSpec, out_dir: Path, **options: Any) -> FitResult:
    """training.loop.fit on the NumPy engine (options as there)."""
    return run_fit(analysis, spec, out_dir, NumpyTrainer, **options)


def evaluate(
    analysis: Analysis, spec: TrainSpec, weights_path: Path, *, data: DataSpec | None = None
) -> Evaluation:
    """Metrics of saved weights, their outputs computed by the NumPy engine."""
    executor, io = Executor(analysis, np.float32), io_of(analysis)
    chunk = eval_chunk(analysis, spec.batch, EVAL_BATCH)

    def run(params: Params, x: Any) -> Any:
        return predict(executor, io, params, x, chunk)

    return score_weights(analysis, spec, weights_path, run, data=data)
