"""Run an exported model with onnxruntime: checked model, validated inputs, explicit provider.

`provider="cuda"` never falls back to the CPU silently: onnxruntime itself would, with only a log
line, so the session's actual providers are checked after it is created.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.feeds import InputSignature, validate
from netspec.memory import Estimate
from netspec.ops.base import Array

Provider = Literal["auto", "cpu", "cuda"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

_ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
    ort_state.EPFail,
)
_NUMPY_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def _fail(message: str, hint: str | None = None, exit_code: int = EXIT_RUNTIME) -> NetspecError:
    return NetspecError.at(message, hint=hint, exit_code=exit_code)


# The last model read, by (resolved path, mtime, size): predict asks for its inputs, its
# metadata, a memory estimate and a session, and a large model should be read and checked once.
_LAST: tuple[tuple[str, int, int], onnx.ModelProto] | None = None


def load_model(path: str | Path) -> onnx.ModelProto:
    """Read and check an ONNX file; a missing, corrupt or invalid file is a clean error.

    The model is shared with the caller that read the same unchanged file last: read it only.
    """
    global _LAST
    path = Path(path)
    if not path.is_file():
        raise _fail(f"no such ONNX model: {path}")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if _LAST is not None and _LAST[0] == key:
        return _LAST[1]
    model = _read_checked(path)
    _LAST = (key, model)
    return model


def _read_checked(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
    except (OSError, DecodeError, ValueError) as e:
        raise _fail(
            f"{path} is not a readable ONNX model ({type(e).__name__}: {e})",
            hint="re-export it with `netspec export`",
        ) from None
    except onnx.checker.ValidationError as e:  # external data outside the folder, a FIFO...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _fail(
            f"{path}: its external data cannot be read: {first}",
            hint="keep an ONNX model's external data as regular files beside it",
        ) from None
    _check_text(model, path)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _fail(
            f"{path} is not a valid ONNX model: {first}",
            hint="re-export it with `netspec export`",
        ) from None
    if not model.graph.node and not model.graph.output:
        raise _fail(f"{path} is not a valid ONNX model: it has an empty graph")
    return model


def _check_text(model: onnx.ModelProto, path: Path) -> None:
    """The strings netspec reads from a model (metadata, input, output and node names) are
    text: protobuf hands invalid UTF-8 back as bytes, which would fail later, far from here."""
    graph = model.graph
    fields = [("metadata", p.key) for p in model.metadata_props]
    fields += [("metadata", p.value) for p in model.metadata_props]
    fields += [("a tensor name", v.name) for v in (*graph.input, *graph.output)]
    fields += [("a tensor name", t.name) for t in graph.initializer]
    fields += [
        ("a node's input or output", n) for node in graph.node for n in (*node.input, *node.output)
    ]
    bad = next((what for what, value in fields if not isinstance(value, str)), None)
    if bad is not None:
        raise _fail(
            f"{path} is not a valid ONNX model: {bad} is not UTF-8 text",
            hint="re-export it with `netspec export`",
        )
    labels = next((p.value for p in model.metadata_props if p.key == "labels"), None)
    if labels is not None:
        try:
            names = json.loads(labels)
        except (ValueError, RecursionError):
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str | int) for n in names):
            raise _fail(
                f"{path}: its `labels` metadata is not a JSON list of class names",
                hint='labels are stored as JSON, e.g. ["cat", "dog"]; re-export it with '
                "`netspec export`",
            )


def estimate_memory(model: onnx.ModelProto, batch: int, name: str) -> Estimate:
    """Initializers plus every tensor of the graph for `batch` rows, with per-sample sizes from
    ONNX shape inference (the first axis is the batch); tensors of unknown size count 0."""

    def itemsize(elem_type: int) -> int:
        try:
            return int(onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
        except (KeyError, TypeError, ValueError):
            return 4

    params = sum(math.prod(t.dims) * itemsize(t.data_type) for t in model.graph.initializer)
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        graph = model.graph
    inits = {t.name for t in model.graph.initializer}
    sizes: dict[str, int] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        if info.name in inits or not tensor.HasField("shape") or not tensor.shape.dim:
            continue
        dims = tensor.shape.dim[1:]
        if all(d.HasField("dim_value") for d in dims):
            count = math.prod(d.dim_value for d in dims)
            sizes[info.name] = count * itemsize(tensor.elem_type) * batch
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
    return Estimate(f"running {name} (batch {batch})", params, 0, sum(sizes.values()), largest)


def session(model: onnx.ModelProto, provider: Provider) -> tuple[ort.InferenceSession, str]:
    """An inference session on the requested provider, and the provider that actually runs."""
    available = ort.get_available_providers()
    if provider == "cuda" and CUDA not in available:
        raise _fail(
            "the CUDA execution provider is not available: install onnxruntime-gpu and check "
            f"the GPU driver; available: {available}"
        )
    providers = {"cpu": [CPU], "cuda": [CUDA, CPU], "auto": [CUDA, CPU]}[provider]
    providers = [p for p in providers if p in available]
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=providers)
    except _ORT_ERRORS as e:
        raise _fail(f"onnxruntime cannot load the model: {e}") from None
    used = sess.get_providers()[0]
    if provider == "cuda" and used != CUDA:
        raise _fail(
            "the CUDA execution provider failed to start (onnxruntime fell back to "
            f"{used}): check the GPU driver and CUDA/cuDNN libraries; available: {available}"
        )
    return sess, used


def signature(model: onnx.ModelProto, sess: ort.InferenceSession) -> list[InputSignature]:
    """The session's inputs as `feeds.validate` checks them. An integer input that a Gather
    uses as indices into an initializer is an embedding's ids: ONNX's Gather would wrap a
    negative id around the table, and onnxruntime fails on one past its end, so their range
    is checked before the model runs, as the NumPy engine does."""
    tables = {t.name: t.dims[0] for t in model.graph.initializer if t.dims}
    vocab: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
            ids, rows = node.input[1], int(tables[node.input[0]])
            vocab[ids] = min(rows, vocab.get(ids, rows))
    out = []
    for i in sess.get_inputs():
        want = _NUMPY_TYPES.get(i.type)
        if want is None:
            raise _fail(f"input '{i.name}' has the unsupported type {i.type}")
        shape = tuple(d if isinstance(d, int) else None for d in i.shape)
        out.append(InputSignature(i.name, np.dtype(want), shape, vocab.get(i.name)))
    return out


def run_onnx(
    model_path: str | Path,
    inputs: Mapping[str, Array],
    provider: Provider = "auto",
    batch_size: int = 256,
) -> tuple[dict[str, Array], str]:
    """Outputs by name for `inputs` (batch-first arrays), and the provider that ran them.

    Inputs are fed in chunks of `batch_size` (or the model's fixed batch) and joined again.
    """
    if batch_size < 1:
        raise _fail(f"batch_size must be >= 1, got {batch_size}", exit_code=EXIT_USAGE)
    model = load_model(model_path)
    sess, used = session(model, provider)
    feed = validate(signature(model, sess), inputs)
    total = next(iter(feed.values())).shape[0] if feed else 1
    fixed = {i.shape[0] for i in sess.get_inputs() if i.shape and isinstance(i.shape[0], int)}
    step = batch_size
    if fixed:
        (step,) = fixed
        if total % step:
            raise _fail(
                f"the model was exported for batch {step} but the input has {total} rows",
                hint="re-export with `--batch dynamic`",
            )
    names = [o.name for o in sess.get_outputs()]
    chunks: dict[str, list[Array]] = {n: [] for n in names}
    for start in range(0, total, step):
        part = {k: v[start : start + step] for k, v in feed.items()}
        try:
            results = sess.run(names, part)
        except _ORT_ERRORS as e:
            raise _fail(f"onnxruntime failed: {e}") from None
        for n, r in zip(names, results, strict=True):
            chunks[n].append(np.asarray(r))
    return {n: np.concatenate(c, axis=0) for n, c in chunks.items()}, used
