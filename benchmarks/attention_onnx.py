"""Which ONNX form of attention onnxruntime runs fastest (issue 16: "attention as MatMul/Softmax,
or the Attention op where onnxruntime supports it: measure which is faster").

    PYTHONPATH=. .venv/bin/python benchmarks/attention_onnx.py [--quick] [--threads 1]
        [--batches 1,32]

The transformer_encoder spec is exported four ways, only the attention nodes differing:
netspec's lowering (MatMul, Softmax, MatMul over [N, H, T, d] heads, the 1/sqrt(d) folded into
q's weights); the opset-23 `Attention` op over the three projections; onnxruntime's contrib
`com.microsoft.MultiHeadAttention` (same inputs, the biases fused in); and
`com.microsoft.Attention`, which takes the input and the stacked (D, 3D) projection itself.
Each is timed interleaved against netspec's lowering in one process (ratio < 1: the variant is
faster), its logits compared with the NumPy engine's, and its model put through the checker and
strict shape inference (ONNX has no schema for the contrib ops: it skips them, so their
"yes" says only that the rest of the graph still infers).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

if __name__ == "__main__" and "--threads" in sys.argv:  # before numpy sizes OpenBLAS's pool
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = sys.argv[sys.argv.index("--threads") + 1]

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import interleaved
from workloads import TRAINING, batch_of, fresh_params

from netspec.engine.executor import Executor
from netspec.ops.attention import Attention, causal_mask
from netspec.ops.base import Ctx, OnnxIO, OnnxNode

Lowering = Callable[[Attention, OnnxIO], list[OnnxNode]]
MS = "com.microsoft"
CONTRIB = "netspec_contrib"  # marks a stand-in node: the exporter checks names against ONNX


def _projections(op: Attention, io: OnnxIO) -> list[tuple[list[OnnxNode], str, str]]:
    """q, k, v = x W^T (+ b), as [N, T, D] tensors: (nodes, product, bias or '')."""
    d = io.input_shapes[0][1]
    out = []
    for i, name in enumerate("qkv"):
        rows = slice(i * d, (i + 1) * d)
        w = io.derived(f"w{name}", lambda p, r=rows: p["in_proj_weight"][r].T)
        proj = io.tmp(f"attn_{name}")
        b = io.derived(f"b{name}", lambda p, r=rows: p["in_proj_bias"][r]) if op.bias else ""
        out.append(([OnnxNode("MatMul", (io.inputs[0], w), (proj,))], proj, b))
    return out


def _out_proj(op: Attention, io: OnnxIO, ctx: str) -> list[OnnxNode]:
    wo = io.derived("wo", lambda p: p["out_proj.weight"].T)
    if not op.bias:
        return [OnnxNode("MatMul", (ctx, wo), (io.output,))]
    out = io.tmp("attn_out")
    return [
        OnnxNode("MatMul", (ctx, wo), (out,)),
        OnnxNode("Add", (out, io.param("out_proj.bias")), (io.output,)),
    ]


def attention23(op: Attention, io: OnnxIO) -> list[OnnxNode]:
    """The opset-23 Attention op over 3-D q, k, v (it splits and merges the heads itself)."""
    nodes: list[OnnxNode] = []
    qkv = []
    for proj_nodes, proj, b in _projections(op, io):
        nodes += proj_nodes
        if b:
            biased = io.tmp(f"{proj}b")
            nodes.append(OnnxNode("Add", (proj, b), (biased,)))
            proj = biased
        qkv.append(proj)
    ctx = io.tmp("attn_ctx")
    attrs = {"q_num_heads": op.heads, "kv_num_heads": op.heads, "is_causal": int(op.causal)}
    nodes.append(OnnxNode("Attention", tuple(qkv), (ctx,), attrs))
    return nodes + _out_proj(op, io, ctx)


def ms_multihead(op: Attention, io: OnnxIO) -> list[OnnxNode]:
    """com.microsoft.MultiHeadAttention(q, k, v, bias): the three biases added inside."""
    nodes: list[OnnxNode] = []
    qkv = []
    for proj_nodes, proj, _ in _projections(op, io):
        nodes += proj_nodes
        qkv.append(proj)
    inputs = tuple(qkv)
    if op.bias:
        inputs += (io.derived("bqkv", lambda p: p["in_proj_bias"]),)
    if op.causal:  # an additive [T, T] mask broadcast over batch and heads
        t = io.input_shapes[0][0]
        mask = io.const("attn_causal", causal_mask(t).astype(np.float32)[None, None])
        inputs = (*inputs, *("",) * (4 - len(inputs)), "", mask)
    ctx = io.tmp("attn_ctx")
    attrs = {"num_heads": op.heads, CONTRIB: "MultiHeadAttention"}
    nodes.append(OnnxNode("Attention", inputs, (ctx,), attrs))
    return nodes + _out_proj(op, io, ctx)


def ms_attention(op: Attention, io: OnnxIO) -> list[OnnxNode]:
    """com.microsoft.Attention(x, W_in^T (D, 3D), b_in): the projection fused in as well."""
    w = io.derived("wqkv", lambda p: p["in_proj_weight"].T)
    d = io.input_shapes[0][1]
    b = (
        io.derived("bqkv", lambda p: p["in_proj_bias"])
        if op.bias
        else io.const("attn_nobias", np.zeros(3 * d, np.float32))
    )
    ctx = io.tmp("attn_ctx")
    attrs = {"num_heads": op.heads, "unidirectional": int(op.causal), CONTRIB: "Attention"}
    return [
        OnnxNode("Attention", (io.inputs[0], w, b), (ctx,), attrs),
        *_out_proj(op, io, ctx),
    ]


VARIANTS: dict[str, Lowering | None] = {
    "matmul_softmax": None,  # netspec's own lowering
    "onnx_attention23": attention23,
    "ms_multiheadattention": ms_multihead,
    "ms_attention": ms_attention,
}


def export(analysis: Any, params: dict[str, np.ndarray], lowering: Lowering | None) -> Any:
    """The spec's ONNX model with attention lowered by `lowering` (None: netspec's own)."""
    import onnx

    from netspec.onnx.export import to_onnx_model

    original = Attention.to_onnx
    if lowering is not None:
        Attention.to_onnx = lambda self, io: lowering(self, io)  # type: ignore[method-assign]
    try:  # the stand-ins fail the exporter's own check: strict_ok checks the final model
        with mock.patch.object(onnx.checker, "check_model"):
            model = to_onnx_model(analysis, params, logits=True)
    finally:
        Attention.to_onnx = original  # type: ignore[method-assign]
    for node in model.graph.node:
        marks = [a for a in node.attribute if a.name == CONTRIB]
        if marks:
            node.domain, node.op_type = MS, marks[0].s.decode()
            node.attribute.remove(marks[0])
    if any(n.domain == MS for n in model.graph.node):
        model.opset_import.append(onnx.helper.make_opsetid(MS, 1))
    return model


def strict_ok(model: Any) -> str:
    import onnx

    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # reported, not raised: the contrib ops fail here
        return f"no ({str(exc).splitlines()[0][:70]})"
    return "yes"


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 reps of ~0.1 s (default 9 of 0.3 s)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime and BLAS threads")
    ap.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    args = ap.parse_args()
    reps, budget = (5, 0.1) if args.quick else (9, 0.3)
    (w,) = (w for w in TRAINING if w.name == "transformer_encoder_b32")
    analysis = w.analysis()
    params = fresh_params(analysis)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
    sessions = {}
    for name, lowering in VARIANTS.items():
        model = export(analysis, params, lowering)
        sess = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        sessions[name] = (sess, strict_ok(model), len(model.graph.node))
    (inp,), (out,) = analysis.network.inputs, analysis.network.outputs
    executor = Executor(analysis, np.float32)
    print(
        f"onnxruntime threads {args.threads}; ratio = variant / matmul_softmax, median [min..max]"
    )
    print(
        "| variant               | batch | ms      | matmul ms | ratio [min..max]   "
        + "| max |diff| vs NumPy | strict shape inference | nodes"
    )
    for batch in (int(b) for b in args.batches.split(",")):
        x, _ = batch_of(analysis, batch)
        want = executor.forward({inp.name: x}, params, Ctx(train=False))[0][out]
        base, _, _ = sessions["matmul_softmax"]
        feed = {base.get_inputs()[0].name: x}
        for name, (sess, strict, nodes) in sessions.items():
            err = float(np.max(np.abs(sess.run(None, feed)[0] - want)))
            rec = interleaved(
                lambda s=sess, f=feed: s.run(None, f),
                lambda b=base, f=feed: b.run(None, f),
                reps,
                budget,
            )
            print(
                f"| {name:21s} | {batch:5d} | {rec['netspec_ms']:7.3f} "
                f"| {rec['reference_ms']:9.3f} | "
                f"{rec['ratio']:5.2f} [{rec['ratio_min']:.2f}..{rec['ratio_max']:.2f}] | "
                f"{err:20.1e} | {strict:22s} | {nodes}"
            )


if __name__ == "__main__":
    main()
