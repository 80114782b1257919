"""Every op netspec exports comes back from its ONNX: each registered op's contract examples are
exported alone, imported and re-exported, and give the same op (or the one its inference graph
is) and the same onnxruntime output. A new op without a recovery fails here by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from netspec import api
from netspec.importer import import_model
from netspec.importer.emit import identifier
from netspec.onnx.export import to_onnx_model
from tests.ops.test_contract import CASES, _model_and_data

# What an op's inference graph is when that is another op: no exporter can tell them apart.
INFERENCE_FORM = {
    "dropout": ["identity"],  # the identity at inference
    "rrelu": ["leaky_relu"],  # the mean slope at inference
}
# Examples whose graph is several netspec layers: the same values, spelt with more statements.
SPELT_OUT = {
    ("lrn", 1): ["reshape", "lrn", "reshape"],  # ONNX's LRN wants (N, C, H, W)
    ("mul", 1): ["mul", "mul"],  # three factors are two binary Muls
}
SKIP_KINDS = {"input"}


def _case(case: Any) -> Any:
    cls, k, ex = case.values
    return pytest.param(cls, k, ex, id=case.id)


@pytest.mark.parametrize(
    ("cls", "k", "ex"), [_case(c) for c in CASES if c.values[0].kind() not in SKIP_KINDS]
)
def test_an_op_s_export_imports_as_the_same_op_with_the_same_output(
    cls: Any, k: int, ex: Any, tmp_path: Path
) -> None:
    model, xs, _ = _model_and_data(ex.op, ex, k)
    path = tmp_path / "op.onnx"
    onnx.save(model, path)
    imported = import_model(path)
    again = api.check(api.load(tmp_path / "op.net", text=imported.text))
    ops = [again.network.node(n).op.op for n in again.order]
    ops = [op for op in ops if op != "input"]
    kind = cls.kind()
    assert ops == SPELT_OUT.get((kind, k), INFERENCE_FORM.get(kind, [kind])), imported.text
    feeds = {f"x{i}": x for i, x in enumerate(xs)}
    renamed = {identifier(name): x for name, x in feeds.items()}
    back = to_onnx_model(again, imported.weights)
    want, got = _ort(model, feeds), _ort(back, renamed)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    (y,) = sess.run(None, {k: v for k, v in feeds.items() if k in names})
    return np.asarray(y)
