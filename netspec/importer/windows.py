"""Recovering the windowed ops: Conv (with a zero Pad before it folded into its padding),
MaxPool, AveragePool and the global pools, and a standalone constant Pad."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from netspec.importer.layers import (
    Layer,
    Match,
    Matcher,
    attrs_of,
    compact,
    f32,
    ints,
    used_outputs,
)
from netspec.ops.resize import interpolation


def _padding(pads: list[int], n: int) -> int | list[int]:
    begins, ends = list(pads[:n]), list(pads[n:])
    if begins == ends:
        return compact(begins)
    return [int(p) for p in pads]


def _window_attrs(a: dict[str, Any], n: int, extra_pads: list[int]) -> dict[str, Any] | None:
    """stride, padding and dilation of a Conv or pool, without the defaults; None when the
    node pads in a way netspec has no spelling for (SAME_LOWER)."""
    out: dict[str, Any] = {}
    auto = a.get("auto_pad", "NOTSET")
    pads = list(a.get("pads", [0] * 2 * n))
    pads = [p + q for p, q in zip(pads, extra_pads, strict=True)]
    if auto == "SAME_UPPER" and not any(extra_pads):
        out["padding"] = "same"
    elif auto not in ("NOTSET", "VALID", "SAME_UPPER"):
        return None
    elif any(pads):
        out["padding"] = _padding(pads, n)
    strides = a.get("strides", [1] * n)
    out["stride"] = compact(strides)
    dil = a.get("dilations", [1] * n)
    if any(d != 1 for d in dil):
        out["dilation"] = compact(dil)
    return out


def fuse_pads(m: Match) -> None:
    """Before matching: a zero Pad that only a Conv reads becomes part of the conv's padding
    (exporters write explicit Pads for asymmetric or framework-level padding)."""
    producer = {o: n for n in m.model.nodes for o in n.output}
    for node in m.model.nodes:
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        w = m.const(node.input[1])
        pad_node = producer.get(node.input[0])
        if w is None or pad_node is None or pad_node.op_type != "Pad":
            continue
        spatial = _constant_pad(pad_node, m)
        if m.sole_reader(node.input[0]) is node and spatial and len(spatial) == 2 * (w.ndim - 2):
            m.take(pad_node)
            m.padded[id(node)] = (pad_node.input[0], spatial)


def _scalar(value: Any) -> float:
    flat = np.asarray(value).reshape(-1)
    return float(flat[0]) if flat.size else 0.0


def _constant_pad(node: onnx.NodeProto, m: Match, value_ok: bool = False) -> list[int] | None:
    """A constant-mode Pad's per-sample pads without the channel axis (zero value unless
    value_ok); None when it pads the batch or channel axis or is not constant."""
    a = attrs_of(node)
    if a.get("mode", "constant") != "constant":
        return None
    pads = m.const(node.input[1]) if len(node.input) > 1 else a.get("pads")
    value = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else 0.0
    if pads is None or value is None or (not value_ok and _scalar(value) != 0.0):
        return None
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    r = len(pads) // 2
    if r < 3 or pads[0] or pads[r] or pads[1] or pads[r + 1]:
        return None
    return pads[2:r] + pads[r + 2 :]


def conv(node: onnx.NodeProto, m: Match) -> Layer | None:
    w = m.const(node.input[1])
    if w is None or w.ndim not in (3, 4) or len(used_outputs(node, m)) > 1:
        return None
    n = w.ndim - 2
    x, extra = m.padded.get(id(node), (node.input[0], [0] * 2 * n))
    a = attrs_of(node)
    geometry = _window_attrs(a, n, extra)
    if geometry is None:
        return None
    attrs: dict[str, Any] = {"filters": int(w.shape[0]), "kernel": compact(w.shape[2:])}
    attrs.update({k: v for k, v in geometry.items() if not (k == "stride" and v == 1)})
    if a.get("group", 1) != 1:
        attrs["groups"] = int(a["group"])
    params = {"weight": w}
    b = m.bias(node)
    if b is None:
        attrs["bias"] = False
    else:
        params["bias"] = b.reshape(-1)
    return Layer(f"conv{n}d", attrs, [x], node.output[0], node, params)


def conv_transpose(node: onnx.NodeProto, m: Match) -> Layer | None:
    """ConvTranspose with symmetric pads and no output_shape (netspec's and torch's)."""
    w = m.const(node.input[1])
    a = attrs_of(node)
    if w is None or w.ndim not in (3, 4) or "output_shape" in a:
        return None
    n = w.ndim - 2
    pads = list(a.get("pads", [0] * 2 * n))
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or pads[:n] != pads[n:]:
        return None
    groups = int(a.get("group", 1))
    attrs: dict[str, Any] = {"filters": int(w.shape[1]) * groups, "kernel": compact(w.shape[2:])}
    for key, onnx_key, values in (
        ("stride", "strides", a.get("strides", [1] * n)),
        ("padding", "pads", pads[:n]),
        ("output_padding", "output_padding", a.get("output_padding", [0] * n)),
        ("dilation", "dilations", a.get("dilations", [1] * n)),
    ):
        default = 1 if onnx_key in ("strides", "dilations") else 0
        if any(int(v) != default for v in values):
            attrs[key] = compact(values)
    if groups != 1:
        attrs["groups"] = groups
    params = {"weight": w}
    b = m.bias(node)
    if b is None:
        attrs["bias"] = False
    else:
        params["bias"] = b.reshape(-1)
    return Layer(f"conv_transpose{n}d", attrs, [node.input[0]], node.output[0], node, params)


def upsample(node: onnx.NodeProto, m: Match) -> Layer | None:
    """A_h @ x @ A_w^T with netspec's interpolation matrices: its upsample2d's export."""
    a_h, shape = m.const(node.input[0]), m.shape(node.input[1])
    cols = m.sole_reader(node.output[0])
    a_wt = None if cols is None or cols.op_type != "MatMul" else m.const(cols.input[1])
    if a_h is None or shape is None or len(shape) != 3 or a_wt is None or cols is None:
        return None
    h, w = shape[1], shape[2]
    scale = a_h.shape[0] // h if a_h.ndim == 2 and a_h.shape[1] == h else 0
    for mode in ("nearest", "bilinear"):
        rows, across = interpolation(h, max(scale, 1), mode), interpolation(w, max(scale, 1), mode)
        if (
            scale >= 1
            and rows.shape == a_h.shape
            and across.T.shape == a_wt.shape
            and np.allclose(a_h, rows, atol=1e-6)
            and np.allclose(a_wt, across.T, atol=1e-6)
        ):
            m.take(cols)
            attrs: dict[str, Any] = {} if scale == 2 else {"scale": scale}
            if mode != "nearest":
                attrs["mode"] = mode
            return Layer("upsample2d", attrs, [node.input[1]], cols.output[0], node)
    return None


# Resize's (mode, coordinate_transformation_mode) that are upsample2d's modes: nearest as torch's
# nn.Upsample (floor of out / scale), bilinear with align_corners=False.
_RESIZE = {
    ("nearest", "asymmetric"): "nearest",
    ("linear", "half_pixel"): "bilinear",
    ("linear", "pytorch_half_pixel"): "bilinear",
}


def resize(node: onnx.NodeProto, m: Match) -> Layer | None:
    """Resize of H and W by one integer factor (torch's nn.Upsample) as upsample2d."""
    a = attrs_of(node)
    shape = m.shape(node.input[0])
    mode = _RESIZE.get((a.get("mode", "nearest"), a.get("coordinate_transformation_mode", "")))
    floor = a.get("mode", "nearest") != "nearest" or a.get("nearest_mode", "") == "floor"
    if shape is None or len(shape) != 3 or mode is None or not floor or a.get("antialias", 0):
        return None
    scales = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    sizes = m.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if scales is not None and scales.size == 4:
        factors = [float(v) for v in scales.reshape(-1)]
    elif sizes is not None and sizes.size == 4:
        factors = [1.0, float(sizes.reshape(-1)[1]) / shape[0]]
        factors += [float(sizes.reshape(-1)[k]) / shape[k - 1] for k in (2, 3)]
    else:
        return None
    scale = factors[2]
    if factors[1:] != [1.0, scale, scale] or scale != int(scale) or scale < 1:
        return None
    attrs: dict[str, Any] = {} if scale == 2 else {"scale": int(scale)}
    if mode != "nearest":
        attrs["mode"] = mode
    return Layer("upsample2d", attrs, [node.input[0]], node.output[0], node)


def _pool(kind: str) -> Matcher:
    def match(node: onnx.NodeProto, m: Match) -> Layer | None:
        a = attrs_of(node)
        kernel = list(a.get("kernel_shape", []))
        n = len(kernel)
        if n not in (1, 2) or len(used_outputs(node, m)) > 1:
            return None
        geometry = _window_attrs(a, n, [0] * 2 * n)
        if geometry is None or (kind == "avg" and "dilation" in geometry):
            return None
        attrs: dict[str, Any] = {"kernel": compact(kernel)}
        if geometry["stride"] == attrs["kernel"]:
            del geometry["stride"]
        attrs.update(geometry)
        if a.get("ceil_mode", 0):
            attrs["ceil_mode"] = True
        if kind == "avg" and a.get("count_include_pad", 0):
            attrs["count_include_pad"] = True
        return Layer(f"{kind}pool{n}d", attrs, [node.input[0]], node.output[0], node)

    return match


def _global(op: str) -> Matcher:
    def match(node: onnx.NodeProto, m: Match) -> Layer | None:
        return Layer(op, {}, [node.input[0]], node.output[0], node)

    return match


def global_mean(node: onnx.NodeProto, m: Match) -> Layer | list[Layer] | None:
    """ReduceMean over every spatial axis is the global average pool (torch's dynamo exporter
    writes adaptive_avg_pool2d(1) and x.mean((2, 3)) so); without keepdims, a flatten too.
    sequence.mean reads ReduceMean first: one axis without keepdims is its `mean`."""
    shape = m.shape(node.input[0])
    a = attrs_of(node)
    axes = ints(m, node, 1, "axes")
    if shape is None or len(shape) < 2 or axes is None:
        return None
    rank = len(shape) + 1
    if sorted(k % rank for k in axes) != list(range(2, rank)):
        return None
    if a.get("keepdims", 1):
        return Layer("global_avgpool", {}, [node.input[0]], node.output[0], node)
    pooled = f"{node.output[0]}_pooled"
    return [
        Layer("global_avgpool", {}, [node.input[0]], pooled, node),
        Layer("flatten", {}, [pooled], node.output[0], node),
    ]


def pad(node: onnx.NodeProto, m: Match) -> Layer | None:
    spatial = _constant_pad(node, m, value_ok=True)
    if spatial is None:
        # Pads of the channel axis too (ResNet-20's shortcut): netspec's pad takes every
        # per-sample axis, so only the batch axis must be left alone.
        pads = m.const(node.input[1]) if len(node.input) > 1 else None
        if pads is None or attrs_of(node).get("mode", "constant") != "constant":
            return None
        flat = [int(p) for p in np.asarray(pads).reshape(-1)]
        r = len(flat) // 2
        if flat[0] or flat[r]:
            return None
        per_sample = flat[1:r] + flat[r + 1 :]
    else:
        r = len(spatial) // 2
        per_sample = [0, *spatial[:r], 0, *spatial[r:]]
    attrs: dict[str, Any] = {"pads": per_sample}
    value = m.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if value is not None and _scalar(value) != 0.0:
        attrs["value"] = f32(_scalar(value))
    return Layer("pad", attrs, [node.input[0]], node.output[0], node)


MATCHERS: dict[str, Matcher] = {
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "Resize": resize,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global("global_avgpool"),
    "GlobalMaxPool": _global("global_maxpool"),
    "Pad": pad,
}
