"""Recurrent layers from ONNX: torch.nn.LSTM, GRU and RNN (one way or both, all states or the
last step) exported by torch.onnx.export import as netspec's lstm, gru, rnn or bidirectional
and agree with the original within 1e-4; ONNX's gate orders come back as torch's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from netspec.errors import NetspecError
from netspec.importer import import_model
from tests.onnx.foreign import import_torch


class Recurrent(torch.nn.Module):
    def __init__(self, cell: Any, bidirectional: bool, sequences: bool, **kw: Any) -> None:
        super().__init__()
        self.rnn = cell(5, 4, batch_first=True, bidirectional=bidirectional, **kw)
        self.sequences = sequences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return y if self.sequences else y[:, -1]


CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


@pytest.mark.parametrize("sequences", [True, False], ids=["all_states", "last_step"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_torch_recurrent_layers_import_and_agree(
    cell: str, bidirectional: bool, sequences: bool, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    module = Recurrent(CELLS[cell], bidirectional, sequences)
    _, text = import_torch(module, torch.randn(2, 6, 5), tmp_path)
    want = f"bidirectional({cell}(4" if bidirectional else f"{cell}(4"
    assert want in text
    if not bidirectional:
        assert ("return_sequences=true" in text) == sequences


def test_a_relu_rnn_keeps_its_nonlinearity(tmp_path: Path) -> None:
    torch.manual_seed(1)
    module = Recurrent(torch.nn.RNN, False, True, nonlinearity="relu")
    _, text = import_torch(module, torch.randn(2, 6, 5), tmp_path)
    assert 'nonlinearity="relu"' in text


def _gru(linear_before_reset: int) -> Any:
    """X (N, T, F) -> Transpose -> GRU -> Y_h -> Squeeze: netspec's own pattern."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(1, 6, 3)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.normal(size=(1, 6, 2)).astype(np.float32), "R")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node(
            "GRU", ["xt", "W", "R"], ["", "h"], hidden_size=2,
            linear_before_reset=linear_before_reset,
        ),
        helper.make_node("Squeeze", ["h", "axes"], ["y"]),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[w, r, axes],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_a_gru_that_resets_before_its_linear_map_is_refused(tmp_path: Path) -> None:
    """ONNX's default GRU (linear_before_reset=0) computes r * h before W_hn: not torch's cell,
    so not netspec's; with 1 it is."""
    onnx.save(_gru(1), tmp_path / "ok.onnx")
    assert "gru(2)" in import_model(tmp_path / "ok.onnx").text
    onnx.save(_gru(0), tmp_path / "bad.onnx")
    with pytest.raises(NetspecError, match="GRU x1"):
        import_model(tmp_path / "bad.onnx")
