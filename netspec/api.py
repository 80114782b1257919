"""The pipeline as straight-line functions, for the CLI and for embedding netspec in programs.

from netspec import api
net = api.load("specs/lenet5.net")
analysis = api.check(net)          # raises NetspecError listing every problem
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from netspec.errors import EXIT_USAGE, Diagnostic, NetspecError
from netspec.expand import expand, load_program
from netspec.graph import analyse, require
from netspec.ir import Analysis, Network


def load(
    path: str | Path,
    network: str | None = None,
    *,
    text: str | None = None,
    allow_outside_imports: bool = False,
) -> Network:
    """A `.net` spec (expanded) or an IR `.json` (as written by `compile`) -> Network."""
    path = Path(path)
    if path.suffix == ".json":
        net = _load_json(path, text)
        if network is not None and network != net.name:  # an IR holds one network
            raise NetspecError.at(
                f"no network named '{network}' in {path}: this IR holds network '{net.name}'",
                hint="drop --network, or compile the network you want from its spec",
            )
        return net
    if text is None and not path.exists():
        raise NetspecError.at(f"no such file: {path}", exit_code=1)
    program = load_program(path, text, allow_outside=allow_outside_imports)
    return expand(program, network)


def source_files(path: str | Path, *, allow_outside_imports: bool = False) -> list[Path]:
    """The files a spec is read from: itself and, transitively, every import (those that only
    give constants or a train section too). An IR JSON is one file."""
    path = Path(path)
    if path.suffix == ".json":
        return [path]
    return load_program(path, allow_outside=allow_outside_imports).files


def _load_json(path: Path, text: str | None) -> Network:
    try:
        raw = text if text is not None else path.read_text(encoding="utf-8")
        data: Any = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NetspecError.at(f"cannot read IR JSON {path}: {e}") from None
    if isinstance(data, dict) and "network" in data and "layers" in data:
        data = data["network"]  # a compiled analysis: the IR is inside
    try:
        return Network.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise NetspecError.at(
            f"{path} is not a valid netspec IR: {where}: {first['msg']} "
            f"({e.error_count()} problem(s))"
        ) from None


def analyse_network(net: Network) -> tuple[Analysis, list[Diagnostic]]:
    """Shapes and counts plus every diagnostic, without raising (for partial tables)."""
    return analyse(net)


def check(net: Network) -> Analysis:
    """The analysed network; raises NetspecError with every error found."""
    analysis, diags = analyse(net)
    return require(analysis, diags)


def compile_json(analysis: Analysis) -> str:
    """The IR with inferred shapes, as JSON that `load` reads back."""
    return analysis.model_dump_json(indent=1)


def schema() -> dict[str, Any]:
    """The IR's JSON Schema."""
    return Network.model_json_schema()


def export(
    analysis: Analysis,
    path: str | Path,
    params: dict[str, Any] | None = None,
    *,
    opset: int | None = None,
    batch: int | str = "dynamic",
    logits: bool = False,
    seed: int = 0,
    normalization: tuple[Any, Any] | None = None,
    fold_batchnorm: bool = True,
) -> dict[str, Any]:
    """Write the network as a checked ONNX model; fresh weights from `seed` when none are given.

    `normalization` (shift, scale), as the trainer saves in normalization.npz, is built into
    the model so that it takes raw inputs.

    Returns the model's opset, inputs and outputs (see `netspec.onnx.export.export_summary`).
    """
    import numpy as np

    from netspec.onnx.export import export_summary, save_model, to_onnx_model

    if params is None:
        from netspec.engine.init import init_params

        params = init_params(analysis, np.random.default_rng(seed))
    norm = None
    if normalization is not None:
        (first,) = [n.name for n in analysis.network.inputs][:1]
        norm = {first: normalization}
    model = to_onnx_model(
        analysis,
        params,
        opset=opset,
        batch=batch,  # type: ignore[arg-type]
        logits=logits,
        normalization=norm,
        fold_batchnorm=fold_batchnorm,
    )
    save_model(model, Path(path))
    return export_summary(model)


def predict(
    model: str | Path | Analysis,
    inputs: dict[str, Any],
    *,
    params: dict[str, Any] | None = None,
    network: str | None = None,
    provider: str = "auto",
    batch_size: int = 256,
    logits: bool = False,
    normalization: tuple[Any, Any] | None = None,
    allow_outside_imports: bool = False,
) -> tuple[dict[str, Any], str]:
    """Outputs by name, and what ran them: an `.onnx` model on onnxruntime (`provider` auto,
    cpu or cuda), or a spec with `params` on the NumPy engine in eval mode. Like an exported
    model, a spec's classifier outputs get the loss's softmax/sigmoid as `<out>.probs`
    unless `logits`. `model` may also be a checked spec (an Analysis), which is not read again."""
    if isinstance(model, Analysis):
        path, analysis = Path(model.network.source or model.network.name), model
    else:
        path, analysis = Path(model), None
    if path.suffix == ".onnx" and analysis is None:
        from netspec.onnx.runtime import run_onnx

        if network is not None:
            raise NetspecError.at(f"{path} holds one network: drop --network", exit_code=EXIT_USAGE)

        return run_onnx(path, inputs, provider, batch_size)  # type: ignore[arg-type]
    if provider == "cuda":
        raise NetspecError.at(
            "the NumPy engine runs on the CPU only: export to .onnx to use --provider cuda",
            exit_code=EXIT_USAGE,
        )
    if params is None:
        raise NetspecError.at(f"predicting with {path} needs weights", exit_code=EXIT_USAGE)
    if analysis is None:
        analysis = check(load(path, network, allow_outside_imports=allow_outside_imports))
    return _predict_numpy(analysis, inputs, params, batch_size, logits, normalization), "numpy"


def _predict_numpy(
    analysis: Analysis,
    inputs: dict[str, Any],
    params: dict[str, Any],
    batch: int,
    logits: bool,
    normalization: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    import numpy as np

    from netspec.engine.checkpoint import check_weights
    from netspec.engine.executor import Executor
    from netspec.engine.losses import log_softmax, sigmoid
    from netspec.feeds import InputSignature, validate
    from netspec.ops.base import Ctx

    net = analysis.network
    expected = {
        f"{name}.{local}": shape
        for name, info in analysis.layers.items()
        for local, shape in {**info.param_shapes, **info.state_shapes}.items()
    }
    check_weights(params, expected, "the weights")
    signature = [
        InputSignature(
            node.name,
            np.dtype(getattr(node.op, "dtype", "float32")),
            (None, *analysis.shape(node.name)),
        )
        for node in net.inputs
    ]
    # Checked before normalising: a badly shaped input must be named, not fail to broadcast.
    feed = validate(signature, inputs)
    if normalization is not None:  # as the exported model does it, on the first input
        first = net.inputs[0].name
        shift, scale = normalization
        feed[first] = ((feed[first] - shift) / scale).astype(feed[first].dtype)
    executor = Executor(analysis)
    total = len(next(iter(feed.values())))
    parts = [
        executor.forward({k: v[s : s + batch] for k, v in feed.items()}, params, Ctx())[0]
        for s in range(0, total, batch)
    ]
    outs = {o: np.concatenate([p[o] for p in parts]) for o in net.outputs}
    loss = None if logits or net.train is None else net.train.loss
    for o in net.outputs:  # the loss's activation, as in training and in the exported model
        if loss == "cross_entropy":
            outs[f"{o}.probs"] = np.exp(log_softmax(outs.pop(o)))
        elif loss == "binary_cross_entropy":
            outs[f"{o}.probs"] = sigmoid(outs.pop(o))
    return outs


def train(
    analysis: Analysis,
    out_dir: str | Path | None = None,
    *,
    data: str | Path | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    progress: Any = None,
) -> Any:
    """Train by the network's `train` section (arguments override it); returns a FitResult.

    Writes weights.npz, history.json and checkpoint.npz into `out_dir` (default: the resumed
    run's folder, else runs/<network>/). `resume` names a run folder or its checkpoint.npz.
    """
    from netspec.engine.checkpoint import resume_checkpoint
    from netspec.engine.data import with_path
    from netspec.engine.train import fit, require_recipe

    spec = require_recipe(analysis)
    checkpoint = None if resume is None else resume_checkpoint(Path(resume))
    if out_dir is None:
        out_dir = checkpoint.parent if checkpoint else Path("runs") / analysis.network.name
    return fit(
        analysis,
        spec,
        Path(out_dir),
        data=None if data is None else with_path(spec.data, data),
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
        resume_from=checkpoint,
        progress=progress,
    )


def evaluate(analysis: Analysis, weights: str | Path, *, data: str | Path | None = None) -> Any:
    """Metrics of saved weights (an Evaluation) on `data`, or the recipe's validation data."""
    from netspec.engine.data import with_path
    from netspec.engine.train import evaluate as run_evaluation
    from netspec.engine.train import require_recipe

    spec = require_recipe(analysis)
    override = None if data is None else with_path(spec.data, data)
    return run_evaluation(analysis, spec, Path(weights), data=override)
