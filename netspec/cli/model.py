"""`export` and `predict`: a model to ONNX, and a model run on inputs."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.cli.args import (
    Command,
    allow_outside_imports,
    max_memory,
    non_negative_int,
    positive_int,
    spec_arguments,
)
from netspec.cli.outputs import check_output
from netspec.cli.report import err, note_torch_counters
from netspec.errors import EXIT_USAGE, NetspecError, printable

if TYPE_CHECKING:
    from netspec.ir import Analysis

Array = Any  # numpy arrays; numpy is imported only when a command runs
_SHOWN_ROWS = 20  # predictions printed; -o saves every row
_SHOWN_POSITIONS = 32  # of a per-position output (a tagger's), the first shown


def _batch(text: str) -> int | str:
    if text == "dynamic":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value < 2**31:  # ONNX dims are int64; a batch past 2**31 is a typo
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or a positive integer, got {text!r}")
    return value


def _export_arguments(e: argparse.ArgumentParser) -> None:
    spec_arguments(e)
    e.add_argument("--weights", help="trained weights (.npz, or a run folder holding weights.npz)")
    e.add_argument("-o", "--output", help="the .onnx file (default: <network>.onnx)")
    e.add_argument("--opset", type=int, help="ONNX opset, 13 or newer (default: newest supported)")
    e.add_argument(
        "--batch", type=_batch, default="dynamic", help="'dynamic' (default) or a fixed size"
    )
    e.add_argument(
        "--logits", action="store_true", help="omit the softmax/sigmoid the loss implies"
    )
    e.add_argument(
        "--no-fold-batchnorm",
        dest="fold_batchnorm",
        action="store_false",
        help="keep batchnorm as its own node instead of folding it into the conv before it",
    )
    e.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of fresh weights when none given"
    )


def run_export(args: argparse.Namespace) -> int:
    from netspec import api
    from netspec.runs import weights_file

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    weights = None if args.weights is None else api.trained(net, args.weights)
    if args.output is not None:
        out = Path(args.output)
    elif args.weights is not None:
        out = weights_file(args.weights).parent / f"{net.name}.onnx"
    else:
        out = Path(f"{net.name}.onnx")
    check_output(args, out, "model.onnx")  # -o or the default beside the weights
    summary = api.export(
        analysis,
        out,
        None if weights is None else weights.params,
        opset=args.opset,
        batch=args.batch,
        logits=args.logits,
        seed=args.seed,
        normalization=None if weights is None else weights.normalization,
        fold_batchnorm=args.fold_batchnorm,
    )
    if weights is not None:
        note_torch_counters(weights.ignored)
    if weights is not None and weights.normalization is not None:
        err("note: the model normalises its input itself, with the training statistics")
    if weights is None:
        err(f"note: no --weights given: exported freshly initialised weights (seed {args.seed})")
    ins = ", ".join(f"{k} {v}" for k, v in summary["inputs"].items())
    outs = ", ".join(f"{k} {v}" for k, v in summary["outputs"].items())
    print(f"wrote {out} (opset {summary['opset']}, {summary['nodes']} nodes)")
    print(f"  inputs:  {ins}")
    print(f"  outputs: {outs}")
    return 0


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx model, or a .net spec with --weights")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="input arrays: X.npy (NAME= for one of several inputs) or X.npz by input name",
    )
    p.add_argument("--weights", help="weights for a .net spec")
    p.add_argument("--network", help="which network of a .net file")
    allow_outside_imports(p)
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--top", type=positive_int, default=5, help="classes shown per example")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--logits", action="store_true", help="keep raw outputs (.net models)")
    p.add_argument("-o", "--output", help="save outputs: .npy (one output) or .npz")
    max_memory(p, "model")


def _inputs(specs: list[str], names: list[str]) -> dict[str, Array]:
    """`--input` values -> arrays by model input name."""
    from netspec import api

    if not specs:
        raise NetspecError.at(
            f"predict needs --input (the model takes {names})", exit_code=EXIT_USAGE
        )
    out: dict[str, Array] = {}
    source: dict[str, str] = {}  # input name -> the --input that gave it
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep:
            name, file = "", spec
        arrays = api.read_inputs(file)
        if "" in arrays:  # one .npy
            if not name:
                if len(names) != 1:
                    raise NetspecError.at(
                        f"the model takes {len(names)} inputs {names}: name each, "
                        f"e.g. --input {names[0]}={file}",
                        exit_code=EXIT_USAGE,
                    )
                name = names[0]
            found = {name: arrays[""]}
        elif len(arrays) == 1 and len(names) == 1 and names[0] not in arrays:
            found = {names[0]: next(iter(arrays.values()))}
        else:
            found = {k: v for k, v in arrays.items() if k in names} or arrays
        for key, value in found.items():
            if key in out:  # keeping only the last one would predict on data nobody meant
                raise NetspecError.at(
                    f"input '{key}' is given twice, by --input {source[key]} and --input {spec}",
                    hint=f"give each of the model's inputs {names} once",
                    exit_code=EXIT_USAGE,
                )
            out[key], source[key] = value, spec
    return out


def _model(args: argparse.Namespace) -> tuple[Path | Analysis, dict[str, Array] | None, Any]:
    """What predict runs: an .onnx path, or a checked spec with its weights and statistics."""
    from netspec import api

    model = Path(args.model)
    if model.suffix in (".npz", ".npy"):
        raise NetspecError.at(
            f"the model must be a .net spec, an IR .json or an .onnx model, got {model}",
            hint="weights go in --weights and input arrays in --input, e.g. "
            "netspec predict spec.net --weights run/ --input x.npy",
            exit_code=EXIT_USAGE,
        )
    if model.suffix == ".onnx":
        if args.weights is not None:
            raise NetspecError.at(
                "an .onnx model carries its weights: drop --weights", exit_code=EXIT_USAGE
            )
        return model, None, None
    if args.weights is None:
        raise NetspecError.at(
            f"predicting with {args.model} needs --weights (or export it to .onnx first)",
            exit_code=EXIT_USAGE,
        )
    net = api.load(model, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)  # read and checked once: the estimate and the run share it
    weights = api.trained(net, args.weights)
    return analysis, weights.params, weights


def run_predict(args: argparse.Namespace) -> int:
    from netspec import api

    model, params, weights = _model(args)
    norm = None if weights is None else weights.normalization
    if weights is not None:
        note_torch_counters(weights.ignored)
    inputs = _inputs(args.input, api.model_inputs(model))
    outputs, provider = api.predict(
        model,
        inputs,
        params=params,
        network=args.network,
        provider=args.provider,
        batch_size=args.batch_size,
        logits=args.logits,
        normalization=norm,
        allow_outside_imports=args.allow_outside_imports,
        max_memory=args.max_memory,
    )
    print(f"provider: {provider}")
    _show(
        outputs, api.model_metadata(model, None if weights is None else weights.classes), args.top
    )
    if args.output is not None:
        api.save_outputs(args.output, outputs)
        err(f"wrote {args.output}")
    return 0


def _show(outputs: Mapping[str, Array], meta: Mapping[str, str], top: int) -> None:
    """Top-k classes with probabilities for classifiers; summary statistics otherwise."""
    import json

    import numpy as np

    from netspec.losses import LOSSES

    try:  # each output's loss, as export records them; a damaged record is not used
        losses = json.loads(meta.get("losses", "{}"))
    except ValueError:
        losses = {}
    labels = json.loads(meta["labels"]) if "labels" in meta else None

    def name_of(c: int) -> str:
        return printable(str(labels[c])) if labels is not None and c < len(labels) else str(c)

    for name, y in outputs.items():
        given = losses.get(name.removesuffix(".probs")) if isinstance(losses, dict) else None
        loss = LOSSES.get(given if isinstance(given, str) else meta.get("loss", ""))
        print(f"output {printable(name)}: shape {list(y.shape)}")
        probs: Array | None = None
        if y.ndim == 3 and y.shape[2] > 1 and loss is not None and loss.per_position:
            _show_positions(y if name.endswith(".probs") else loss.probabilities(y), name_of)
            continue
        if y.ndim == 2 and y.shape[1] > 1:
            if name.endswith(".probs"):
                probs = y
            elif loss is not None and loss.activation == "softmax":  # exported with --logits
                probs = loss.probabilities(y)
        if probs is None:
            for i, row in enumerate(y[:_SHOWN_ROWS]):
                flat = np.ravel(row)
                shown = ", ".join(f"{v:.4g}" for v in flat[:8]) + (" ..." if flat.size > 8 else "")
                print(f"  [{i}] {shown}")
        else:
            k = min(top, probs.shape[1])
            best = np.argsort(-probs, axis=1)[:, :k]
            for i in range(min(len(probs), _SHOWN_ROWS)):
                shown = ", ".join(f"{name_of(c)}: {probs[i, c]:.4f}" for c in best[i])
                print(f"  [{i}] {shown}")
        if len(y) > _SHOWN_ROWS:
            print(f"  ... {len(y) - _SHOWN_ROWS} more row(s); save them all with -o")


def _show_positions(probs: Array, name_of: Callable[[int], str]) -> None:
    """Per-position class scores: the likeliest class at each position of each sample."""
    import numpy as np

    best = np.argmax(probs, axis=-1)
    for i, row in enumerate(best[:_SHOWN_ROWS]):
        shown = " ".join(name_of(int(c)) for c in row[:_SHOWN_POSITIONS])
        print(f"  [{i}] {shown}" + (" ..." if len(row) > _SHOWN_POSITIONS else ""))
    if len(probs) > _SHOWN_ROWS:
        print(f"  ... {len(probs) - _SHOWN_ROWS} more row(s); save them all with -o")


EXPORT = Command(
    "export",
    "write the network as an ONNX model",
    _export_arguments,
    run_export,
    output_example="model.onnx",
)
PREDICT = Command(
    "predict",
    "run a model on inputs",
    _predict_arguments,
    run_predict,
    output_example="outputs.npz",
    description="Run an .onnx model with onnxruntime, or a .net spec with --weights "
    "on the NumPy engine.",
)
