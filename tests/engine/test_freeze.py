"""`freeze = [...]` in a recipe: names are layers, block instances or repetitions (a located
error with a hint otherwise); frozen parameters take no step on either engine (no gradient,
optimizer state, decay or penalty), a frozen batchnorm keeps its running statistics, a resume
keeps the freeze, and `check` counts trainable and frozen parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.cli import main
from netspec.errors import NetspecError

SPEC = """
block unit(c) {
  conv2d(c, kernel=3, padding=1)
  batchnorm
  relu
}
network F {
  input image: [1, 8, 8]
  conv1 = conv2d(4, kernel=3, padding=1)
  bn1 = batchnorm
  relu
  stage = unit(4) * 2
  maxpool2d(2)
  flatten
  fc = dense(10)
}
train F {
  data = "d.npz"
  optimizer = adamw(lr=0.01, weight_decay=0.1)
  l2 = 0.01
  clip_norm = 0.5
  epochs = 1
  batch = 16
  FREEZE
}
"""


def _spec(tmp_path: Path, freeze: str = 'freeze = ["conv1", "bn1", "stage"]') -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.normal(size=(48, 64)).astype(np.float32),
        y=rng.integers(0, 10, size=48),
    )
    path = tmp_path / "f.net"
    path.write_text(SPEC.replace("FREEZE", freeze), encoding="utf-8")
    return path


def test_check_counts_trainable_and_frozen_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(_spec(tmp_path))]) == 0
    out = capsys.readouterr().out
    # conv1 40 + bn1 8 + two units of (conv 148 + bn 8) = 360 frozen; fc 64*10+10 = 650 left.
    assert "parameters: 650 trainable, 360 frozen by the recipe" in out
    assert main(["check", str(_spec(tmp_path)), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["trainable_params"], data["frozen_params"]) == (650, 360)
    assert main(["check", str(_spec(tmp_path, ""))]) == 0
    assert "parameters: 1,010 trainable (" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("freeze", "where", "hint"),
    [
        ('freeze = ["conv1", "stge"]', 'freeze = ["conv1", "stge"]'.index('"stge"'), "'stage'"),
        ('freeze = ["conv"]', 'freeze = ["conv"]'.index('"conv"'), "'conv1'"),
    ],
)
def test_an_unknown_name_is_a_located_error_with_the_nearest_name(
    tmp_path: Path, freeze: str, where: int, hint: str
) -> None:
    with pytest.raises(NetspecError) as e:
        api.load(_spec(tmp_path, freeze))
    (d,) = e.value.diagnostics
    assert "has no layer or block named" in d.message and d.span is not None
    line = SPEC.replace("FREEZE", freeze).splitlines().index("  " + freeze) + 1
    assert (d.span.line, d.span.column) == (line, 3 + where)
    assert d.hint is not None and hint in d.hint


def test_freezing_everything_is_refused_and_block_names_freeze_each_instance(
    tmp_path: Path,
) -> None:
    everything = 'freeze = ["conv1", "bn1", "stage", "fc"]'
    with pytest.raises(NetspecError, match="leaves nothing of network F to train"):
        api.check(api.load(_spec(tmp_path, everything)))
    from netspec.freezing import frozen_layers

    one = api.load(_spec(tmp_path, 'freeze = ["stage.1"]'))
    instance = {n.name for n in one.nodes if n.name.startswith("stage.1.")}
    assert frozen_layers(one) == instance and len(instance) == 3


def test_an_ir_jsons_unknown_freeze_name_is_an_error(tmp_path: Path) -> None:
    ir = json.loads(api.compile_json(api.check(api.load(_spec(tmp_path)))))
    ir["network"]["train"]["freeze"] = ["conv9"]
    (tmp_path / "f.json").write_text(json.dumps(ir["network"]), encoding="utf-8")
    with pytest.raises(NetspecError, match="no layer or block named 'conv9'"):
        api.check(api.load(tmp_path / "f.json"))


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_frozen_layers_take_no_step_and_keep_their_statistics(tmp_path: Path, engine: str) -> None:
    analysis = api.check(api.load(_spec(tmp_path)))
    result = api.train(
        analysis,
        tmp_path / "run",
        engine=engine,  # type: ignore[arg-type]
        device="cpu" if engine == "torch" else None,
        curves=False,
    )
    from netspec.initializers import init_params
    from netspec.training.plan import streams

    start = init_params(analysis, streams(0)[0])  # the run's own initial weights
    frozen = [k for k in start if not k.startswith("fc.")]
    assert frozen and all(np.array_equal(result.params[k], start[k]) for k in frozen)
    assert not np.array_equal(result.params["fc.weight"], start["fc.weight"])
    slots = {k for k in np.load(result.checkpoint_path) if k.startswith("optimizer/")}
    assert slots == {"optimizer/step"} | {
        f"optimizer/{s}.fc.{p}" for s in ("m", "v") for p in ("weight", "bias")
    }
    # A resume continues with the freeze; one whose recipe freezes otherwise is refused.
    more = api.train(analysis, resume=tmp_path / "run", epochs=2, engine=engine, curves=False)  # type: ignore[arg-type]
    assert len(more.history) == 2
    assert all(np.array_equal(more.params[k], start[k]) for k in frozen)
    other = api.check(api.load(_spec(tmp_path, 'freeze = ["conv1"]')))
    with pytest.raises(NetspecError, match="trained with freeze = \\['conv1', 'bn1', 'stage'\\]"):
        api.train(other, resume=tmp_path / "run", epochs=3, engine=engine, curves=False)  # type: ignore[arg-type]


def test_both_engines_train_the_head_alike_under_decay_penalty_and_clipping(
    tmp_path: Path,
) -> None:
    analysis = api.check(api.load(_spec(tmp_path)))
    a = api.train(analysis, tmp_path / "n", curves=False)
    b = api.train(analysis, tmp_path / "t", engine="torch", device="cpu", curves=False)
    for k in ("fc.weight", "fc.bias"):
        np.testing.assert_allclose(a.params[k], b.params[k], atol=1e-5)


def test_clip_norm_measures_the_trainable_gradients_only(tmp_path: Path) -> None:
    from netspec.engine.executor import Executor
    from netspec.engine.trainer import NumpyTrainer
    from netspec.ops.base import Ctx

    text = SPEC.replace("  bn1 = batchnorm\n", "").replace("  stage = unit(4) * 2\n", "")
    text = text.replace("adamw(lr=0.01, weight_decay=0.1)", "sgd(lr=1.0)").replace("l2 = 0.01", "")
    path = _spec(tmp_path, 'freeze = ["conv1"]')
    path.write_text(text.replace("FREEZE", 'freeze = ["conv1"]'), encoding="utf-8")
    analysis = api.check(api.load(path))
    spec = analysis.network.train
    assert spec is not None and spec.clip_norm == 0.5
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=16)
    trainer = NumpyTrainer(analysis, spec, np.random.default_rng(0), np.random.default_rng(0))
    start = {k: v.copy() for k, v in trainer.params.items()}
    # Every gradient of the same step, frozen or not, by an executor that freezes nothing.
    out, tape = Executor(analysis).forward({"image": x}, start, Ctx(train=True))
    _, dout = trainer.loss_fn(out["fc"], y)
    grads = Executor(analysis).backward(tape, {"fc": dout}, start)
    head = float(np.sqrt(sum((grads[k] ** 2).sum() for k in ("fc.weight", "fc.bias"))))
    assert float(np.sqrt(sum((g**2).sum() for g in grads.values()))) > head > 0.5
    trainer.loss(x, y)
    trainer.update(1.0)
    for k in ("fc.weight", "fc.bias"):
        step = start[k] - trainer.params[k]
        np.testing.assert_allclose(step, grads[k] * (0.5 / head), rtol=1e-4, atol=1e-7)
    assert np.array_equal(trainer.params["conv1.weight"], start["conv1.weight"])
