"""Every network in specs/ exports to ONNX that agrees with netspec, shape by shape and value by
value (architecture only: random weights, non-trivial batchnorm statistics, batch 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

from netspec import api
from netspec.engine.executor import Executor
from netspec.engine.init import init_params
from netspec.ir import Analysis, Network
from netspec.onnx.export import to_onnx_model
from netspec.ops.base import Array, Ctx
from tests.onnx.test_export import _inputs, _numpy, _ort

SPECS = sorted((Path(__file__).resolve().parent.parent.parent / "specs").glob("*.net"))


@dataclass(frozen=True)
class Exported:
    analysis: Analysis
    params: dict[str, Array]
    xs: dict[str, Array]
    model: onnx.ModelProto  # as `netspec export` writes it: batchnorm folded into convs
    unfolded: onnx.ModelProto  # one ONNX node per layer: every spec tensor visible


def _calibrated(spec: Analysis, xs: dict[str, Array]) -> dict[str, Array]:
    """Weights whose batchnorm statistics are those of real activations, as after training.

    Random running statistics let 600 residual blocks (ResNet-1202) overflow in eval mode, and
    NaN would then compare equal to NaN. One training-mode pass with momentum 1 sets every
    running mean and variance to its batch's; the export ignores momentum.
    """
    data = spec.network.model_dump()
    for node in data["nodes"]:
        if node["op"]["op"] == "batchnorm":
            node["op"]["momentum"] = 1.0
    calibrating = api.check(Network.model_validate(data))
    params = init_params(spec, np.random.default_rng(0))
    Executor(calibrating).forward(xs, params, Ctx(train=True))
    return params


@pytest.fixture(scope="module", params=SPECS, ids=[p.stem for p in SPECS])
def exported(request: pytest.FixtureRequest) -> Exported:
    analysis = api.check(api.load(request.param))
    xs = _inputs(analysis, batch=2)
    params = _calibrated(analysis, xs)
    return Exported(
        analysis,
        params,
        xs,
        to_onnx_model(analysis, params, logits=True),
        to_onnx_model(analysis, params, logits=True, fold_batchnorm=False),
    )


def test_onnx_shape_inference_gives_netspec_s_shape_for_every_tensor(exported: Exported) -> None:
    spec = exported.analysis
    onnx.checker.check_model(exported.model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(exported.unfolded, strict_mode=True)
    shapes = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    for name in spec.order:
        if name not in shapes:  # only an alias (dropout at inference) leaves no tensor
            assert spec.network.node(name).op.op == "dropout", name
            continue
        assert shapes[name] == ["N", *spec.shape(name)], name


def test_onnxruntime_matches_the_numpy_forward_within_1e_4(exported: Exported) -> None:
    """Against the exact (float64) forward: onnxruntime's float32 result is within 1e-4 of the
    output's scale, or no further off than netspec's own float32 forward. The second clause is
    for depth: over ResNet-152's 150 normalised layers both float32 engines drift ~4e-4."""
    spec, params, xs = exported.analysis, exported.params, exported.xs
    got = _ort(exported.model, xs)
    want32 = _numpy(spec, params, xs)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    x64 = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in xs.items()}
    (exact,) = Executor(spec, np.float64).forward(x64, p64, Ctx(train=False))[0].values()
    assert np.isfinite(exact).all() and np.abs(exact).max() > 0
    # Relative to the output's scale: logits near zero make elementwise ratios meaningless.
    scale = np.abs(exact).max()
    ort_error = np.abs(got - exact).max() / scale
    numpy_error = np.abs(want32 - exact).max() / scale
    assert ort_error <= max(1e-4, 1.5 * numpy_error), (ort_error, numpy_error)
    np.testing.assert_array_equal(got.argmax(axis=-1), exact.argmax(axis=-1))
