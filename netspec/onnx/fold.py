"""Graph rewrites after lowering: batch normalisation folded into the convolution before it."""

from __future__ import annotations

import numpy as np
import onnx

from netspec.onnx.lowering import Graph


def fold_batchnorms(graph: Graph, keep: set[str]) -> None:
    """Fold each BatchNormalization that is the only reader of a Conv's output into the Conv.

    At inference batchnorm is the per-channel affine map y = s (x - mean) + beta with
    s = gamma / sqrt(var + eps), so conv-then-batchnorm is one Conv with weight s W and bias
    s (b - mean) + beta (computed in float64, then rounded once to float32). `keep` holds
    tensors that must stay visible (network outputs).
    """
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.nodes:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    inits = graph.initializers
    folded: set[int] = set()
    for conv in graph.nodes:
        out = conv.output[0]
        users = readers.get(out, [])
        if conv.op_type != "Conv" or out in keep or len(users) != 1:
            continue
        (bn,) = users
        params = [conv.input[1], *bn.input[1:5]]
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or bn.input[0] != out:
            continue
        if not all(name in inits for name in params):
            continue
        w, gamma, beta, mean, var = (inits[name].astype(np.float64) for name in params)
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)  # (F,)
        bias = inits[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else 0.0
        w_name = graph.fresh(f"{conv.name}.weight_bn_folded")
        b_name = graph.fresh(f"{conv.name}.bias_bn_folded")
        inits[w_name] = (w * scale.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        inits[b_name] = ((bias - mean) * scale + beta).astype(np.float32)
        x = conv.input[0]
        del conv.input[:]
        conv.input.extend([x, w_name, b_name])
        conv.output[0] = bn.output[0]
        folded.add(id(bn))
    graph.nodes = [n for n in graph.nodes if id(n) not in folded]
