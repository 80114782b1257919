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
from netspec.initializers import init_params
from netspec.ir import Analysis, Network
from netspec.onnx.export import to_onnx_model
from netspec.ops.base import Array, Ctx
from tests.onnx.test_export import _inputs, _numpy, _ort, _params

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

    One training-mode pass with momentum 1 sets every running mean and variance to its
    batch's (the export ignores momentum). Only for networks that overflow otherwise.
    """
    data = spec.network.model_dump()
    for node in data["nodes"]:
        if node["op"]["op"] == "batchnorm":
            node["op"]["momentum"] = 1.0
    calibrating = api.check(Network.model_validate(data))
    params = init_params(spec, np.random.default_rng(0))
    Executor(calibrating).forward(xs, params, Ctx(train=True))
    return params


# Each spec's export is built once and shared by its tests, on one worker under xdist.
@pytest.fixture(
    scope="module",
    params=[
        pytest.param(p, id=p.stem, marks=pytest.mark.xdist_group(f"onnx-{p.stem}")) for p in SPECS
    ],
)
def exported(request: pytest.FixtureRequest) -> Exported:
    analysis = api.check(api.load(request.param))
    xs = _inputs(analysis, batch=2)
    # Fresh random weights with non-trivial batchnorm statistics, so eval mode matters. Over
    # ResNet-1202's 600 residual blocks random statistics overflow float32 (and NaN would
    # compare equal to NaN), so that one gets statistics of its own activations instead.
    params = _params(analysis)
    with np.errstate(all="ignore"):
        finite = np.isfinite(_numpy(analysis, params, xs)).all()
    if not finite:
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
    want = _numpy(exported.analysis, exported.params, exported.xs)
    got = _ort(exported.model, exported.xs)  # as exported: batchnorm folded into convs
    assert np.isfinite(want).all() and np.abs(want).max() > 0
    # Relative to the output's scale: logits near zero make elementwise ratios meaningless.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_array_equal(got.argmax(axis=-1), want.argmax(axis=-1))
