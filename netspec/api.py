"""The pipeline as straight-line functions, for the CLI and for embedding netspec in programs.

from netspec import api
net = api.load("specs/lenet5.net")
analysis = api.check(net)          # raises NetspecError listing every problem

This module owns policy: the guards (memory, disk, outputs) run here, so a library caller gets
the same refusals as the command line. Back ends are imported inside the functions that use
them, so `netspec check` loads neither onnx nor the training engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from netspec import memory, runs
from netspec.errors import EXIT_USAGE, Diagnostic, NetspecError
from netspec.expand import expand, load_program
from netspec.graph import analyse, require
from netspec.ir import Analysis, Network, read_ir
from netspec.survey import FileCheck as FileCheck  # the type `check_file` returns
from netspec.survey import check_program
from netspec.threads import choose_here, limited

if TYPE_CHECKING:
    from netspec.training.contracts import FitResult, Progress
    from netspec.training.evaluate import Evaluation
    from netspec.viz.diagram import Diagram

MemoryLimit = memory.MemoryLimit  # bytes, None for no limit, "auto" for a share of what is free
Labels = tuple[str, ...] | None
thread_choice = choose_here  # the BLAS thread count a run uses, and why (netspec.threads)
CURVES_INTERVAL_S = 5.0  # curves.png is redrawn at most this often, and once at the end


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
        net = read_ir(path, text)
        if network is not None and network != net.name:  # an IR holds one network
            raise NetspecError.at(
                f"no network named '{network}' in {path}: this IR holds network '{net.name}'",
                hint="drop --network, or compile the network you want from its spec",
            )
        return net
    program = load_program(path, text, allow_outside=allow_outside_imports)
    return expand(program, network)


def source_files(path: str | Path, *, allow_outside_imports: bool = False) -> list[Path]:
    """The files a spec is read from: itself and, transitively, every import (those that only
    give constants or a train section too). An IR JSON is one file."""
    path = Path(path)
    if path.suffix == ".json":
        return [path]
    return load_program(path, allow_outside=allow_outside_imports).files


def analyse_network(net: Network) -> tuple[Analysis, list[Diagnostic]]:
    """Shapes and counts plus every diagnostic, without raising (for partial tables)."""
    return analyse(net)


def check_file(path: str | Path, *, allow_outside_imports: bool = False) -> FileCheck:
    """Every network and block of a `.net` file checked, as `netspec check` does; raises only
    when the file cannot be read or parsed, or defines nothing to check."""
    return check_program(load_program(Path(path), allow_outside=allow_outside_imports))


def check(net: Network) -> Analysis:
    """The analysed network; raises NetspecError with every error found."""
    analysis, diags = analyse(net)
    return require(analysis, diags)


def compile_json(analysis: Analysis) -> str:
    """The IR with inferred shapes, as JSON that `load` reads back."""
    return analysis.model_dump_json(indent=1)


def torch_code(analysis: Analysis) -> str:
    """The network as the readable Python code of its torch.fx GraphModule (needs torch)."""
    from netspec.torch import torch_code as code

    return code(analysis)


def schema() -> dict[str, Any]:
    """The IR's JSON Schema."""
    return Network.model_json_schema()


# ---- trained weights --------------------------------------------------------------------------


def trained(net: Network, weights: str | Path) -> runs.Trained:
    """The weights at `weights` (a weights.npz or its run folder) and the normalization.npz
    beside them, which is applied only when the network's recipe normalises."""
    data = None if net.train is None else net.train.data
    mode = "none" if data is None else data.normalize
    dtype = getattr(net.inputs[0].op, "dtype", "float32") if net.inputs else "float32"
    return runs.load_trained(runs.weights_file(weights), mode, dtype)


# ---- export and inference ----------------------------------------------------------------------


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
    the model so that it takes raw inputs. Returns the model's opset, inputs and outputs (see
    `netspec.onnx.export.export_summary`)."""
    import numpy as np

    from netspec.onnx.export import export_summary, save_model, to_onnx_model

    if params is None:
        from netspec.initializers import init_params

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


def model_inputs(model: str | Path | Analysis) -> list[str]:
    """The names of a model's inputs: an `.onnx` file's graph inputs, or a spec's."""
    if isinstance(model, Analysis):
        return [n.name for n in model.network.inputs]
    from netspec.onnx.runtime import load_model

    graph = load_model(model).graph
    inits = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in inits]


def model_metadata(model: str | Path | Analysis, classes: Labels = None) -> dict[str, str]:
    """What a model says of itself: network, loss, labels (an `.onnx` file's metadata props);
    a spec's labels are its recipe's, else the `classes` its run mapped text labels from."""
    if not isinstance(model, Analysis):
        from netspec.onnx.runtime import load_model

        return {p.key: p.value for p in load_model(model).metadata_props}
    net = model.network
    meta = {"network": net.name}
    if net.train is not None:
        meta["loss"] = net.train.loss
        if net.train.losses is not None:  # each output's, as an exported model records them
            meta["losses"] = json.dumps(dict(zip(net.outputs, net.train.losses, strict=False)))
    labels = net.labels if net.labels is not None else classes
    if labels is not None:
        meta["labels"] = json.dumps(list(labels))
    return meta


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
    max_memory: MemoryLimit = None,
) -> tuple[dict[str, Any], str]:
    """Outputs by name, and what ran them: an `.onnx` model on onnxruntime (`provider` auto,
    cpu or cuda), or a spec with `params` on the NumPy engine in eval mode. Like an exported
    model, a spec's classifier outputs get the loss's softmax/sigmoid as `<out>.probs`
    unless `logits`. `model` may also be a checked spec (an Analysis), which is not read again.
    A run whose memory estimate exceeds `max_memory` bytes is refused before it starts."""
    if isinstance(model, Analysis):
        path, analysis = Path(model.network.source or model.network.name), model
    else:
        path, analysis = Path(model), None
    rows = max((len(a) if getattr(a, "ndim", 0) else 1 for a in inputs.values()), default=1)
    batch = max(1, min(batch_size, rows))
    if path.suffix == ".onnx" and analysis is None:
        from netspec.onnx.runtime import estimate_memory, load_model, run_onnx

        if network is not None:
            raise NetspecError.at(f"{path} holds one network: drop --network", exit_code=EXIT_USAGE)
        est = estimate_memory(load_model(path), batch, path.name)
        memory.check_memory(est, memory.limit_bytes(max_memory))
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
    memory.check_memory(memory.running(analysis, batch, rows), memory.limit_bytes(max_memory))
    from netspec.engine.inference import predict_outputs

    outputs = predict_outputs(analysis, inputs, params, batch_size, logits, normalization)
    return outputs, "numpy"


def read_inputs(path: str | Path) -> dict[str, Any]:
    """The arrays of one input file: an .npz by name, or an .npy as the one array ''."""
    from netspec.arrays import read_input_file

    return read_input_file(Path(path))


def save_outputs(path: str | Path, outputs: Mapping[str, Any]) -> None:
    """Outputs to an .npz by name, or the one output to an .npy, atomically."""
    from netspec.arrays import save_outputs as save

    save(Path(path), outputs)


# ---- training -----------------------------------------------------------------------------------


def train(
    analysis: Analysis,
    out_dir: str | Path | None = None,
    *,
    data: str | Path | None = None,
    x: str | None = None,
    y: str | None = None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    resume: str | Path | None = None,
    init_weights: str | Path | None = None,
    engine: Literal["numpy", "torch"] = "numpy",
    device: str | None = None,
    nproc: int = 1,
    precision: str = "fp32",
    compile: bool = False,
    progress: Progress | None = None,
    max_memory: MemoryLimit = "auto",
    curves: Literal["auto", "always", "never"] | bool = "auto",
    threads: int | None = None,
) -> FitResult:
    """Train by the network's `train` section (arguments override it); returns a FitResult:
    weights.npz, history.json, checkpoint.npz into `out_dir` (default: the resumed run's folder,
    else runs/<network>/); curves.png (matplotlib) drawn by a detached process after the run
    (`curves` "auto"), in the run ("always") or not. `resume` names a run folder or its
    checkpoint.npz; `init_weights` a weights .npz to start from (training.starting); `x`, `y`
    name the data's arrays. `engine="torch"` trains with PyTorch on `device` (auto: the GPU if
    any; cuda is refused without one), on `nproc` data-parallel processes (or torchrun's),
    autocast to `precision` (fp32, bf16, fp16), torch.compile'd if `compile`. A run whose
    memory estimate exceeds `max_memory` bytes ("auto": a share of what is available; None: no
    limit), or whose folder cannot be written or lacks room, is refused before it allocates.
    BLAS runs `threads` threads (default: `thread_choice`'s, never slower than one when busy)."""
    from netspec.engine.trainer import fit as numpy_fit
    from netspec.training.data import override
    from netspec.training.plan import check_engine, check_world, require_recipe
    from netspec.training.starting import starting_weights
    from netspec.viz.curves import epoch_hook

    check_engine(engine, device, nproc, precision, compile)
    fit = numpy_fit
    if engine == "torch":  # the pip command if torch is missing
        from netspec.torch.run import fit as torch_fit

        speed = {"precision": precision, "compile": compile}
        fit = partial(torch_fit, device=device or "auto", nproc=nproc, **speed)  # type: ignore
    check_world(spec := require_recipe(analysis), batch, nproc)  # before any folder is made
    out, checkpoint = runs.run_folder(analysis.network.name, out_dir, resume)
    start = starting_weights(init_weights, resume, out, runs.expected_shapes(analysis))
    given = override(spec.data, data, x, y)
    source = spec.data if given is None else given
    memory.check_memory(
        memory.training(analysis, spec, batch, source), memory.limit_bytes(max_memory)
    )
    memory.check_output_dir(out, memory.checkpoint_bytes(analysis, len(spec.optimizer.slots)))
    with limited(thread_choice(threads).count):  # numpy's BLAS is loaded by now
        return fit(
            analysis,
            spec,
            out,
            data=given,
            epochs=epochs,
            batch=batch,
            lr=lr,
            seed=seed,
            resume_from=checkpoint,
            start=start,
            progress=progress,
            on_epoch=epoch_hook(curves, CURVES_INTERVAL_S),
        )


def evaluate(
    analysis: Analysis,
    weights: str | Path,
    *,
    data: str | Path | None = None,
    x: str | None = None,
    y: str | None = None,
) -> Evaluation:
    """Metrics of saved weights (an Evaluation) on `data`, or the recipe's validation data;
    `weights` is a weights.npz or the run folder holding it; `x`, `y` as in `train`."""
    from netspec.engine.trainer import evaluate as run_evaluation
    from netspec.training.data import override
    from netspec.training.plan import require_recipe

    spec = require_recipe(analysis)
    source = override(spec.data, data, x, y)
    return run_evaluation(analysis, spec, runs.weights_file(weights), data=source)


# ---- pictures ------------------------------------------------------------------------------------


def draw(
    analysis: Analysis,
    diags: list[Diagnostic],
    path: str | Path,
    *,
    depth: int | None = None,
    shapes: bool = True,
    engine: Literal["netspec", "dot"] = "netspec",
) -> Diagram:
    """The network as a diagram (.svg, .png, .dot, .html), drawn even when it has errors."""
    from netspec.viz.draw import write_graph

    return write_graph(analysis, diags, Path(path), depth=depth, shapes=shapes, engine=engine)


def plot(run_dirs: list[str | Path], path: str | Path | None = None) -> tuple[Path, int, int]:
    """Training curves of runs (folders holding history.json) into one picture: (the file,
    panels, runs). One run may omit `path`: its curves.png is (re)drawn."""
    from netspec.viz import curves

    found = curves.load_runs([Path(r) for r in run_dirs])
    if path is not None:
        out = Path(path)
    elif len(found) == 1:
        first = Path(run_dirs[0])
        out = (first if first.is_dir() else first.parent) / curves.CURVES
    else:
        raise NetspecError.at("several runs need -o, e.g. -o compare.png", exit_code=EXIT_USAGE)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise NetspecError.at(
            f"cannot draw curves as {out.suffix or 'a file without a suffix'}",
            hint="use .png, .svg or .pdf",
            exit_code=EXIT_USAGE,
        )
    return out, curves.save(found, out), len(found)


def import_onnx(model: str | Path, output: str | Path, weights_out: Path | None = None) -> Any:
    """An ONNX model as a checked `.net` spec and weights (see `netspec.importing`)."""
    from netspec.importing import import_onnx as run

    return run(model, output, weights_out, lambda text: check(load(output, text=text)))


def sample(analysis: Analysis, weights: str | Path, prompt: str, **options: Any) -> str:
    """`prompt` and the text a causal language model writes after it (sampling.sample_text)."""
    from netspec.engine.sampling import sample_text

    return sample_text(analysis, runs.weights_file(weights), prompt, **options)
