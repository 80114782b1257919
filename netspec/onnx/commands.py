"""The `export` and `predict` subcommands.

Imported by `netspec.cli` at start-up, so this module imports neither onnx nor onnxruntime
nor NumPy-heavy back ends at module level: the handlers import them when they run, and
`netspec check` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from netspec import cli
from netspec.engine.guards import DEFAULT_SHARE, parse_limit
from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError

if TYPE_CHECKING:
    from netspec.ir import Analysis, Network
    from netspec.ops.base import Array

_SHOWN_ROWS = 20  # predictions printed; -o saves every row


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


def _add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    spec_command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    e = spec_command("export", "write the network as an ONNX model")
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
        "--seed", type=cli.non_negative_int, default=0, help="seed of fresh weights when none given"
    )

    p = sub.add_parser(
        "predict",
        help="run a model on inputs",
        description="Run an .onnx model with onnxruntime, or a .net spec with --weights "
        "on the NumPy engine.",
    )
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
    p.add_argument(
        "--allow-outside-imports",
        action="store_true",
        help="allow `import` of files outside the spec's folder (.net models)",
    )
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--top", type=cli.positive_int, default=5, help="classes shown per example")
    p.add_argument("--batch-size", type=cli.positive_int, default=256)
    p.add_argument("--logits", action="store_true", help="keep raw outputs (.net models)")
    p.add_argument("-o", "--output", help="save outputs: .npy (one output) or .npz")
    p.add_argument(
        "--max-memory",
        type=parse_limit,
        default="auto",
        metavar="SIZE",
        help="refuse a model whose memory estimate exceeds SIZE (e.g. 4G; 'none': no limit; "
        f"default: {DEFAULT_SHARE * 100:.0f}%% of the memory available)",  # %% for argparse
    )


cli._EXTENSIONS.append(_add_commands)


def _weights_file(path: str) -> Path:
    from netspec.engine.checkpoint import weights_file

    return weights_file(path)


def _load_weights(path: Path) -> dict[str, Array]:
    from netspec.engine.checkpoint import load_weights

    return load_weights(path)


@cli.command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    analysis = api.check(net)
    params = None
    norm = None
    if args.weights is not None:
        params = _load_weights(_weights_file(args.weights))
        norm = _normalization(_weights_file(args.weights), net)
    if args.output is not None:
        out = Path(args.output)
    elif args.weights is not None:
        out = _weights_file(args.weights).parent / f"{net.name}.onnx"
    else:
        out = Path(f"{net.name}.onnx")
    cli.check_output(args, out)  # -o or the default beside the weights
    summary = api.export(
        analysis,
        out,
        params,
        opset=args.opset,
        batch=args.batch,
        logits=args.logits,
        seed=args.seed,
        normalization=norm,
        fold_batchnorm=args.fold_batchnorm,
    )
    if norm is not None:
        cli._err("note: the model normalises its input itself, with the training statistics")
    if params is None:
        cli._err(
            f"note: no --weights given: exported freshly initialised weights (seed {args.seed})"
        )
    ins = ", ".join(f"{k} {v}" for k, v in summary["inputs"].items())
    outs = ", ".join(f"{k} {v}" for k, v in summary["outputs"].items())
    print(f"wrote {out} (opset {summary['opset']}, {summary['nodes']} nodes)")
    print(f"  inputs:  {ins}")
    print(f"  outputs: {outs}")
    return 0


def _load_array(path: Path) -> dict[str, Array]:
    import numpy as np

    if path.suffix == ".npz":
        from netspec.engine.checkpoint import load_arrays

        return load_arrays(path, "input file")
    if not path.is_file():
        raise NetspecError.at(f"input file {path} does not exist", exit_code=EXIT_RUNTIME)
    try:
        return {"": np.load(path, allow_pickle=False)}
    except (OSError, ValueError, EOFError) as e:
        raise NetspecError.at(
            f"input file {path} is not a readable .npy array: {e}", exit_code=EXIT_RUNTIME
        ) from None


def _inputs(specs: list[str], names: list[str]) -> dict[str, Array]:
    """`--input` values -> arrays by model input name."""
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
        arrays = _load_array(Path(file))
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


def _input_names(model: Path, net: Network | None) -> list[str]:
    if net is None:
        from netspec.onnx.runtime import load_model

        graph = load_model(model).graph
        inits = {i.name for i in graph.initializer}
        return [i.name for i in graph.input if i.name not in inits]
    return [n.name for n in net.inputs]


def _metadata(model: Path, net: Network | None) -> dict[str, str]:
    if net is None:
        from netspec.onnx.runtime import load_model

        return {p.key: p.value for p in load_model(model).metadata_props}
    meta = {"network": net.name}
    if net.train is not None:
        meta["loss"] = net.train.loss
    if net.labels is not None:
        import json

        meta["labels"] = json.dumps(list(net.labels))
    return meta


def _normalization(weights: Path, net: Network) -> tuple[Array, Array] | None:
    """The training statistics beside the weights, when the network's recipe normalises."""
    from netspec.engine.checkpoint import load_normalization

    data = None if net.train is None else net.train.data
    mode = "none" if data is None else data.normalize
    dtype = getattr(net.inputs[0].op, "dtype", "float32")
    return load_normalization(weights.parent, mode, dtype)


@cli.command("predict")
def cmd_predict(args: argparse.Namespace) -> int:
    from netspec import api

    model = Path(args.model)
    params = None
    norm = None
    net = None
    analysis = None
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
    elif args.weights is None:
        raise NetspecError.at(
            f"predicting with {args.model} needs --weights (or export it to .onnx first)",
            exit_code=EXIT_USAGE,
        )
    else:
        net = api.load(model, args.network, allow_outside_imports=args.allow_outside_imports)
        analysis = api.check(net)  # read and checked once: the estimate and the run share it
        params = _load_weights(_weights_file(args.weights))
        norm = _normalization(_weights_file(args.weights), net)
    inputs = _inputs(args.input, _input_names(model, net))
    _guard_memory(args, inputs, analysis)
    outputs, provider = api.predict(
        args.model if analysis is None else analysis,
        inputs,
        params=params,
        network=args.network,
        provider=args.provider,
        batch_size=args.batch_size,
        logits=args.logits,
        normalization=norm,
        allow_outside_imports=args.allow_outside_imports,
    )
    print(f"provider: {provider}")
    _show(outputs, _metadata(model, net), args.top)
    if args.output is not None:
        _save(Path(args.output), outputs)
        cli._err(f"wrote {args.output}")
    return 0


def _guard_memory(
    args: argparse.Namespace, inputs: Mapping[str, Array], analysis: Analysis | None
) -> None:
    """Refuse, before the model runs, one whose memory estimate exceeds --max-memory
    (`analysis`: a checked spec; None for an .onnx model)."""
    from netspec.engine.guards import check_memory

    rows = max((len(a) if a.ndim else 1 for a in inputs.values()), default=1)
    batch = max(1, min(args.batch_size, rows))
    if analysis is None:
        from netspec.onnx.runtime import estimate_memory, load_model

        est = estimate_memory(load_model(args.model), batch, Path(args.model).name)
    else:
        from netspec.engine.guards import estimate

        est = estimate(analysis, batch, None)
    check_memory(est, args.max_memory)


def _show(outputs: Mapping[str, Array], meta: Mapping[str, str], top: int) -> None:
    """Top-k classes with probabilities for classifiers; summary statistics otherwise."""
    import json

    import numpy as np

    labels = json.loads(meta["labels"]) if "labels" in meta else None
    for name, y in outputs.items():
        print(f"output {name}: shape {list(y.shape)}")
        probs: Array | None = None
        if y.ndim == 2 and y.shape[1] > 1:
            if name.endswith(".probs"):
                probs = y
            elif meta.get("loss") == "cross_entropy":  # exported with --logits
                z = np.exp(y - y.max(axis=1, keepdims=True))
                probs = z / z.sum(axis=1, keepdims=True)
        if probs is None:
            for i, row in enumerate(y[:_SHOWN_ROWS]):
                flat = np.ravel(row)
                shown = ", ".join(f"{v:.4g}" for v in flat[:8]) + (" ..." if flat.size > 8 else "")
                print(f"  [{i}] {shown}")
        else:
            k = min(top, probs.shape[1])
            best = np.argsort(-probs, axis=1)[:, :k]
            for i in range(min(len(probs), _SHOWN_ROWS)):
                shown = ", ".join(
                    f"{labels[c] if labels is not None and c < len(labels) else c}: "
                    f"{probs[i, c]:.4f}"
                    for c in best[i]
                )
                print(f"  [{i}] {shown}")
        if len(y) > _SHOWN_ROWS:
            print(f"  ... {len(y) - _SHOWN_ROWS} more row(s); save them all with -o")


def _save(path: Path, outputs: Mapping[str, Array]) -> None:
    from typing import IO

    import numpy as np

    from netspec.engine.checkpoint import save_arrays
    from netspec.engine.files import atomic_write

    if path.suffix == ".npz":
        save_arrays(path, outputs)
        return
    if len(outputs) != 1:
        raise NetspecError.at(
            f"the model has {len(outputs)} outputs: save them to an .npz", exit_code=EXIT_USAGE
        )
    (array,) = outputs.values()

    def write(f: IO[bytes]) -> None:
        np.save(f, array)

    atomic_write(path, write)
