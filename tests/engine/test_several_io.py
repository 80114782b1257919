"""Training a network of several inputs and outputs: named arrays in the .npz, one loss per
output and their weighted sum; eval, predict and export read the same run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.training.plan import streams

NET = """
network Two {
  input image: [8]
  input meta: [3]
  a = image -> dense(16) relu
  b = meta -> dense(8) relu
  h = concat(a, b)
  cls = h -> dense(3)
  score = h -> dense(1)
  output cls, score
}
"""
TRAIN = """
train Two {{
  data = "two.npz"
  losses = [cross_entropy, mse]
  loss_weights = [{weights}]
  optimizer = adam(lr=0.02)
  epochs = {epochs}
  batch = 16
  validation = 0.25
  metrics = [accuracy, mae]
}}
"""


def write_data(folder: Path, n: int = 200, **renamed: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(n, 8)).astype(np.float32)
    meta = rng.normal(size=(n, 3)).astype(np.float32)
    arrays = {
        "image": image,
        "meta": meta,
        "cls": np.argmax(image[:, :3] + meta, axis=1),
        "score": (2 * image[:, 3:4] + meta[:, :1]).astype(np.float32),
    }
    np.savez(folder / "two.npz", **{renamed.get(k, k): v for k, v in arrays.items()})


def spec(folder: Path, weights: str = "1.0, 0.5", epochs: int = 20, net: str = NET) -> Analysis:
    path = folder / "two.net"
    path.write_text(net + TRAIN.format(weights=weights, epochs=epochs), encoding="utf-8")
    return api.check(api.load(path))


def test_two_inputs_and_two_outputs_train_by_each_outputs_loss_and_their_weighted_sum(
    tmp_path: Path,
) -> None:
    write_data(tmp_path)
    result = api.train(spec(tmp_path), tmp_path / "run", curves=False)
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"] / 2
    for record in (first, last):
        weighted = record["val_cls.loss"] + 0.5 * record["val_score.loss"]
        assert record["val_loss"] == pytest.approx(weighted, rel=1e-6)
    assert last["val_cls.accuracy"] > 0.7 and last["val_score.mae"] < 0.5
    assert "score.accuracy" not in last  # a regression output gets no classification metric
    history = json.loads(result.history_path.read_text(encoding="utf-8"))
    assert history[-1]["cls.loss"] == last["cls.loss"]

    ev = api.evaluate(spec(tmp_path), tmp_path / "run")
    assert ev.samples == 50  # the run's validation split
    assert ev.metrics["loss"] == pytest.approx(last["val_loss"], rel=1e-5)


def test_an_output_of_weight_zero_gets_no_gradient(tmp_path: Path) -> None:
    write_data(tmp_path)
    analysis = spec(tmp_path, weights="1.0, 0.0", epochs=3)
    result = api.train(analysis, tmp_path / "run", curves=False)
    initial = init_params(analysis, streams(0)[0], np.float32)
    np.testing.assert_array_equal(result.params["score.weight"], initial["score.weight"])
    assert not np.array_equal(result.params["cls.weight"], initial["cls.weight"])


def test_predict_and_export_apply_each_outputs_own_activation(tmp_path: Path) -> None:
    write_data(tmp_path, n=40)
    analysis = spec(tmp_path, epochs=2)
    api.train(analysis, tmp_path / "run", curves=False)
    weights = api.trained(analysis.network, tmp_path / "run")
    with np.load(tmp_path / "two.npz") as d:
        feed = {"image": d["image"][:4], "meta": d["meta"][:4]}
    outs, _ = api.predict(analysis, feed, params=weights.params)
    assert sorted(outs) == ["cls.probs", "score"]  # softmax for cross_entropy, mse's raw
    np.testing.assert_allclose(outs["cls.probs"].sum(axis=1), 1, rtol=1e-5)
    pytest.importorskip("onnxruntime")
    api.export(analysis, tmp_path / "two.onnx", weights.params)
    onnx_outs, _ = api.predict(tmp_path / "two.onnx", feed)
    assert sorted(onnx_outs) == sorted(outs)
    for name, value in outs.items():
        np.testing.assert_allclose(onnx_outs[name], value, rtol=1e-4, atol=1e-5)
    # Each output's loss is recorded, so predict reads an export with --logits output by output.
    each = {"cls": "cross_entropy", "score": "mse"}
    assert json.loads(api.model_metadata(analysis)["losses"]) == each
    assert json.loads(api.model_metadata(tmp_path / "two.onnx")["losses"]) == each


def test_a_lone_input_may_be_the_npz_x_and_a_missing_array_is_named(tmp_path: Path) -> None:
    one_input = NET.replace("  input meta: [3]\n", "").replace("b = meta ->", "b = image ->")
    write_data(tmp_path, image="x")
    api.train(spec(tmp_path, epochs=1, net=one_input), tmp_path / "run", curves=False)

    write_data(tmp_path, score="value")
    with pytest.raises(NetspecError) as err:
        api.train(spec(tmp_path, epochs=1), tmp_path / "run2", curves=False)
    d = err.value.diagnostics[0]
    assert "has no array 'score'" in d.message and err.value.exit_code == EXIT_RUNTIME
    assert d.hint == "give one array per input and output, named like it"


def test_several_outputs_need_npz_data_and_one_loss_per_output(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("1,2,3\n4,5,6\n", encoding="utf-8")
    analysis = spec(tmp_path, epochs=1)
    with pytest.raises(NetspecError) as err:
        api.train(analysis, tmp_path / "run", data=tmp_path / "d.csv", curves=False)
    assert "reads an .npz, not csv data" in err.value.diagnostics[0].message
    assert "image, meta" in (err.value.diagnostics[0].hint or "")

    path = tmp_path / "two.net"
    path.write_text(NET + TRAIN.format(weights="1.0", epochs=1), encoding="utf-8")
    with pytest.raises(NetspecError) as err:
        api.check(api.load(path))
    d = err.value.diagnostics[0]
    assert d.message == "train gives 1 loss_weights but network Two has 2 output(s): cls, score"
    assert d.span is not None and d.span.line == 9  # at the last output, `score = ...`


def test_loss_weights_of_a_single_output_are_refused_rather_than_ignored(tmp_path: Path) -> None:
    one_output = NET.replace("  output cls, score\n", "  output cls\n")
    path = tmp_path / "one.net"
    train = TRAIN.format(weights="0.5", epochs=1).replace("losses = [cross_entropy, mse]", "")
    path.write_text(one_output + train, encoding="utf-8")
    with pytest.raises(NetspecError) as err:
        api.check(api.load(path))
    assert "loss_weights weigh the losses of several outputs" in err.value.diagnostics[0].message
