"""The training loop learns what it should, repeats bitwise, resumes exactly, stops safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspec import api
from netspec import runs as ckpt
from netspec.arrays import load_arrays
from netspec.engine import trainer as loop
from netspec.engine.executor import Executor
from netspec.engine.penalties import add_penalty, clip
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.initializers import init_params
from netspec.ir import Analysis
from netspec.losses import LOSSES
from netspec.runs import history_json
from netspec.training import loop as training_loop
from netspec.training.plan import io_of, penalised_names, streams
from netspec.training.stopping import Stopper

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> Analysis:
    return api.check(api.load(EXAMPLES / name))


def spec_file(tmp_path: Path, body: str, train: str) -> Analysis:
    path = tmp_path / "t.net"
    path.write_text(f"network N {{\n{body}\n}}\ntrain N {{\n{train}\n}}\n", encoding="utf-8")
    return api.check(api.load(path))


def outputs(analysis: Analysis, params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    io = io_of(analysis)
    return loop.predict(Executor(analysis), io, params, x)


# ---- learning --------------------------------------------------------------------------------


def test_xor_2_2_1_learns_xor_exactly(tmp_path: Path) -> None:
    a = example("xor.net")
    result = loop.fit(a, a.network.train, tmp_path)  # type: ignore[arg-type]
    with np.load(EXAMPLES / "data" / "xor.npz") as z:
        x, y = z["x"], z["y"]
    logits = outputs(a, result.params, x)
    np.testing.assert_array_equal((logits > 0).astype(np.float32), y)


def test_six_neuron_net_fits_the_cubic_to_mse_below_0_01(tmp_path: Path) -> None:
    a = example("cubic.net")
    assert a.trainable_params == 6 + 6 + 6 + 1  # six hidden neurons
    result = loop.fit(a, a.network.train, tmp_path)  # type: ignore[arg-type]
    with np.load(EXAMPLES / "data" / "cubic.npz") as z:
        x, y = z["x"], z["y"]
    mse, _ = LOSSES["mse"](outputs(a, result.params, x), y)
    assert mse < 0.01


def test_digits_mlp_reaches_97_percent_validation_accuracy(tmp_path: Path) -> None:
    a = example("digits_mlp.net")
    result = loop.fit(a, a.network.train, tmp_path)  # type: ignore[arg-type]
    assert result.history[-1]["val_accuracy"] >= 0.97


def test_digits_cnn_reaches_98_percent_validation_accuracy(tmp_path: Path) -> None:
    a = example("digits_cnn.net")
    result = loop.fit(a, a.network.train, tmp_path)  # type: ignore[arg-type]
    assert result.history[-1]["val_accuracy"] >= 0.98
    # eval of the saved weights scores the same validation split
    ev = api.evaluate(a, result.weights_path)
    assert ev.metrics["accuracy"] == pytest.approx(result.history[-1]["val_accuracy"])


def test_perceptron_rule_is_rosenblatts_update_and_learns_and(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "and.npz",
        x=np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32),
        y=np.array([[0], [0], [0], [1]], np.float32),
    )
    a = spec_file(
        tmp_path,
        "input x: [2]\n dense(1) step",
        'data = "and.npz"  loss = mse  optimizer = bgd(lr=0.1)  epochs = 1\n'
        "perceptron_rule = true  shuffle = false",
    )
    spec = a.network.train
    assert spec is not None
    first = loop.fit(a, spec, tmp_path / "one")
    init = init_params(a, streams(spec.seed)[0])
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    t = np.array([[0], [0], [0], [1]], np.float32)
    err = t - (x @ init["dense_1.weight"].T + init["dense_1.bias"] > 0)
    np.testing.assert_allclose(
        first.params["dense_1.weight"], init["dense_1.weight"] + 0.1 * err.T @ x
    )
    np.testing.assert_allclose(
        first.params["dense_1.bias"], init["dense_1.bias"] + 0.1 * err.sum(0)
    )
    trained = loop.fit(a, spec, tmp_path / "many", epochs=50)
    np.testing.assert_array_equal(outputs(a, trained.params, x), t)


def test_a_perceptron_reports_accuracy_and_mse_on_its_0_1_outputs(tmp_path: Path) -> None:
    """The step unit's output is a class label and a value at once: both metrics apply."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.savez(tmp_path / "and.npz", x=x, y=np.array([[0], [0], [0], [1]], np.float32))
    a = spec_file(
        tmp_path,
        "input x: [2]\n dense(1) step",
        'data = "and.npz"  loss = mse  optimizer = sgd(lr=0.1)  epochs = 20  batch = 1\n'
        "perceptron_rule = true  shuffle = false  metrics = [accuracy, mse]",
    )
    assert a.network.train is not None
    result = loop.fit(a, a.network.train, tmp_path / "run")
    first, last = result.history[0], result.history[-1]
    assert first["accuracy"] == pytest.approx(1 - first["mse"])  # 0/1 outputs: mse = error rate
    assert last["accuracy"] == 1.0 and last["mse"] == 0.0
    ev = api.evaluate(a, result.weights_path)
    assert ev.metrics["accuracy"] == 1.0 and ev.confusion == [[3, 0], [0, 1]]


def test_perceptron_rule_on_a_network_it_cannot_train_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "and.npz", x=np.zeros((4, 2), np.float32), y=np.zeros((4, 1), np.float32))
    a = spec_file(
        tmp_path,
        "input x: [2]\n dense(3) tanh\n dense(1) step",
        'data = "and.npz"  loss = mse  epochs = 1  perceptron_rule = true',
    )
    assert a.network.train is not None
    with pytest.raises(NetspecError, match="only trainable layer feeds a threshold unit"):
        loop.fit(a, a.network.train, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ---- repeatability, resume, early stopping ------------------------------------------------------

# Dropout draws from the loop's generator, so a resume must restore its state exactly.
SMALL = "input x: [4]\n dense(8) tanh dropout(0.2)\n dense(3)"
SMALL_TRAIN = (
    'data = "d.npz"  loss = cross_entropy  optimizer = adam(lr=0.01)  schedule = cosine\n'
    "batch = 8  epochs = 4  validation = 0.25  metrics = [accuracy]  seed = 7"
)


@pytest.fixture
def small(tmp_path: Path) -> Analysis:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1))
    return spec_file(tmp_path, SMALL, SMALL_TRAIN)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_seeded_runs_repeat_bitwise_and_another_seed_differs(
    small: Analysis, tmp_path: Path
) -> None:
    spec = small.network.train
    assert spec is not None
    one = loop.fit(small, spec, tmp_path / "a")
    two = loop.fit(small, spec, tmp_path / "b")
    other = loop.fit(small, spec, tmp_path / "c", seed=8)
    assert same(one.params, two.params)
    assert one.history[-1]["loss"] == two.history[-1]["loss"]
    assert not same(one.params, other.params)


class _StopAfter:
    """A progress callback that presses Ctrl-C once epoch `k` has finished."""

    def __init__(self, k: int) -> None:
        self.k = k

    def run_start(self, engine: str, device: str) -> None: ...

    def epoch_start(self, epoch: int, epochs: int, samples: int) -> None: ...

    def batch_end(self, samples_done: int, running_loss: float) -> None: ...

    def epoch_end(self, record: dict[str, Any]) -> None:
        if record["epoch"] == self.k:
            raise KeyboardInterrupt


def test_resume_after_an_interrupt_equals_an_uninterrupted_run(
    small: Analysis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        training_loop, "CHECKPOINT_INTERVAL_S", 0.0
    )  # a checkpoint after every epoch
    spec = small.network.train
    assert spec is not None
    whole = loop.fit(small, spec, tmp_path / "whole")
    cut = loop.fit(small, spec, tmp_path / "cut", progress=_StopAfter(2))
    assert cut.stopped == "interrupted"
    assert ckpt.load_checkpoint(tmp_path / "cut").meta["epoch"] == 2
    resumed = loop.fit(small, spec, tmp_path / "cut", resume_from=tmp_path / "cut")
    assert same(resumed.params, whole.params)
    timeless = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert timeless == [{k: v for k, v in h.items() if k != "seconds"} for h in whole.history]
    saved = load_arrays(tmp_path / "cut" / "weights.npz")
    assert same(saved, whole.params)


def test_history_json_records_loss_metrics_lr_and_time_per_epoch(
    small: Analysis, tmp_path: Path
) -> None:
    spec = small.network.train
    assert spec is not None
    result = loop.fit(small, spec, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert set(history[0]) == {
        "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "engine", "device"
    }  # fmt: skip
    assert (history[0]["engine"], history[0]["device"]) == ("numpy", "cpu")
    assert history == result.history
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_early_stopping_restores_the_best_epochs_weights(tmp_path: Path) -> None:
    # Validation targets are the negated training targets: fitting the training set makes the
    # validation loss worse after the first epoch, so epoch 1 is the best.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 2)).astype(np.float32)
    y = (x @ np.array([[2.0], [-1.0]], np.float32)).astype(np.float32)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "val.npz", x=x, y=-y)
    a = spec_file(
        tmp_path,
        "input x: [2]\n dense(1)",
        'data = "train.npz"  val_data = "val.npz"  loss = mse  optimizer = sgd(lr=0.05)\n'
        "epochs = 30  batch = 8  early_stopping = early_stopping(2)",
    )
    spec = a.network.train
    assert spec is not None
    result = loop.fit(a, spec, tmp_path / "run")
    assert result.stopped == "early_stopping" and result.best_epoch == 1
    assert len(result.history) == 4  # the best epoch, then patience + 1 epochs without gain
    val_loss, _ = LOSSES["mse"](outputs(a, result.params, x), -y)
    assert val_loss == pytest.approx(result.history[0]["val_loss"], rel=1e-6)
    assert val_loss < result.history[-1]["val_loss"]


def test_non_finite_loss_stops_with_advice_and_keeps_the_last_checkpoint(
    small: Analysis, tmp_path: Path
) -> None:
    spec = small.network.train
    assert spec is not None
    run = tmp_path / "run"
    loop.fit(small, spec, run, epochs=1)
    before = ckpt.load_checkpoint(run)
    with pytest.raises(NetspecError) as err:
        loop.fit(small, spec, run, epochs=3, lr=1e38, resume_from=run)
    d = err.value.diagnostics[0]
    assert "epoch 2, step" in d.message and err.value.exit_code == EXIT_RUNTIME
    assert "learning rate" in (d.hint or "") and "clip_norm" in (d.hint or "")
    after = ckpt.load_checkpoint(run)
    assert after.meta["epoch"] == 1 and same(after.params, before.params)


def test_a_run_without_normalisation_removes_an_earlier_runs_statistics(
    small: Analysis, tmp_path: Path
) -> None:
    """predict and export apply the normalization.npz beside the weights: a stale one from an
    earlier run into the same folder would silently rescale the new model's inputs."""
    normalising = spec_file(
        tmp_path, SMALL, SMALL_TRAIN.replace('"d.npz"', 'npz("d.npz", normalize="standard")')
    )
    run, stats = tmp_path / "run", tmp_path / "run" / ckpt.NORMALIZATION
    assert normalising.network.train is not None and small.network.train is not None
    first = loop.fit(normalising, normalising.network.train, run, epochs=1)
    assert first.normalization is not None and stats.is_file()
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    second = loop.fit(small, small.network.train, run, epochs=1)
    assert second.normalization is None and not stats.exists()
    assert (run / "notes.txt").read_text(encoding="utf-8") == "mine"  # only that file goes
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".npz") == [
        "checkpoint.npz",
        "weights.npz",
    ]


def test_eval_scores_the_validation_split_of_the_runs_seed_override(
    small: Analysis, tmp_path: Path
) -> None:
    """`train --seed 3` holds out another split than the recipe's seed 7: eval must score the
    run's split, so its metrics are the last epoch's validation metrics."""
    spec = small.network.train
    assert spec is not None
    result = loop.fit(small, spec, tmp_path / "run", seed=3)
    meta = ckpt.load_checkpoint(tmp_path / "run").meta
    assert meta["run"]["seed"] == 3 and meta["run"]["validation"] == 0.25
    ev = api.evaluate(small, result.weights_path)
    last = result.history[-1]
    assert ev.samples == 10
    assert ev.metrics["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert ev.metrics["accuracy"] == last["val_accuracy"]
    assert "seed 3" in ev.source


def test_eval_of_weights_without_a_run_record_splits_by_the_recipes_seed(
    small: Analysis, tmp_path: Path
) -> None:
    """Weights copied out of their run (or from before the record existed): the recipe's seed."""
    spec = small.network.train
    assert spec is not None
    result = loop.fit(small, spec, tmp_path / "run")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "weights.npz").write_bytes(result.weights_path.read_bytes())
    ev = api.evaluate(small, alone / "weights.npz")
    assert ev.metrics["loss"] == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)


def test_eval_beside_a_broken_checkpoint_says_what_it_needed_it_for(
    small: Analysis, tmp_path: Path
) -> None:
    spec = small.network.train
    assert spec is not None
    result = loop.fit(small, spec, tmp_path / "run", epochs=1)
    result.checkpoint_path.write_bytes(b"not a zip")
    with pytest.raises(NetspecError) as err:
        api.evaluate(small, result.weights_path)
    d = err.value.diagnostics[0]
    assert d.message.startswith(f"cannot read the run's seed from {result.checkpoint_path}")
    assert "validation split" in (d.hint or "") and err.value.exit_code == EXIT_RUNTIME


def test_a_resumed_run_keeps_its_seed_override_and_refuses_another(
    small: Analysis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming by the recipe's seed would split off another validation set: the run would
    then train on samples it validated on."""
    monkeypatch.setattr(
        training_loop, "CHECKPOINT_INTERVAL_S", 0.0
    )  # a checkpoint after every epoch
    spec = small.network.train
    assert spec is not None
    cut = tmp_path / "cut"
    whole = loop.fit(small, spec, tmp_path / "whole", seed=3)
    assert loop.fit(small, spec, cut, seed=3, progress=_StopAfter(2)).stopped == "interrupted"
    with pytest.raises(NetspecError) as err:
        loop.fit(small, spec, cut, seed=4, resume_from=cut)
    d = err.value.diagnostics[0]
    assert "seeded with 3, not 4" in d.message and err.value.exit_code == EXIT_RUNTIME
    assert "resume without --seed" in (d.hint or "")
    assert ckpt.load_checkpoint(cut).meta["epoch"] == 2  # nothing was trained
    resumed = loop.fit(small, spec, cut, resume_from=cut)
    assert same(resumed.params, whole.params)
    assert resumed.history[-1]["val_loss"] == whole.history[-1]["val_loss"]


@pytest.mark.parametrize("old_checkpoint", [False, True])
def test_resume_with_another_optimizer_is_refused_before_loading_its_state(
    small: Analysis, tmp_path: Path, old_checkpoint: bool
) -> None:
    """Adam's second moments `v.*` would load as momentum's velocity `v.*` and be applied."""
    spec = small.network.train
    assert spec is not None
    run = tmp_path / "run"
    loop.fit(small, spec, run, epochs=1)
    if old_checkpoint:  # written before the optimizer was recorded: told by its state's names
        state = ckpt.load_checkpoint(run)
        del state.meta["run"]["optimizer"]
        ckpt.save_checkpoint(run / ckpt.CHECKPOINT, state)
    before = (run / ckpt.CHECKPOINT).read_bytes()
    changed = spec_file(tmp_path, SMALL, SMALL_TRAIN.replace("adam(lr=0.01)", "momentum(lr=0.01)"))
    assert changed.network.train is not None
    with pytest.raises(NetspecError) as err:
        loop.fit(changed, changed.network.train, run, epochs=2, resume_from=run)
    d = err.value.diagnostics[0]
    written = "was written by adam" if not old_checkpoint else "holds optimizer state m, v"
    assert written in d.message and "the recipe now uses momentum" in d.message
    assert "resume with the same optimizer or start a fresh run" in (d.hint or "")
    assert err.value.exit_code == EXIT_RUNTIME
    assert (run / ckpt.CHECKPOINT).read_bytes() == before


def test_an_older_momentum_checkpoint_is_refused_by_adam_whose_state_names_include_its_own(
    small: Analysis, tmp_path: Path
) -> None:
    """Momentum keeps {v}, Adam {m, v}: a subset, and still another optimizer's state."""
    momentum = spec_file(tmp_path, SMALL, SMALL_TRAIN.replace("adam(lr=0.01)", "momentum(lr=0.01)"))
    assert momentum.network.train is not None and small.network.train is not None
    run = tmp_path / "run"
    loop.fit(momentum, momentum.network.train, run, epochs=1)
    state = ckpt.load_checkpoint(run)
    del state.meta["run"]["optimizer"]  # written before the optimizer was recorded
    ckpt.save_checkpoint(run / ckpt.CHECKPOINT, state)
    with pytest.raises(NetspecError, match="holds optimizer state v, written by another"):
        loop.fit(small, small.network.train, run, epochs=2, resume_from=run)


@pytest.mark.parametrize(
    ("now", "says"),
    [
        ("validation = 0.5", "validation = 0.25; the recipe now says validation = 0.5"),
        ('val_data = "d.npz"', "validation = 0.25; the recipe now says val_data"),
    ],
)
def test_resume_with_another_held_out_fraction_is_refused(
    small: Analysis, tmp_path: Path, now: str, says: str
) -> None:
    """The split holds out the end of one permutation: another fraction moves trained-on
    samples into validation."""
    assert small.network.train is not None
    run = tmp_path / "run"
    loop.fit(small, small.network.train, run, epochs=1)
    changed = spec_file(tmp_path, SMALL, SMALL_TRAIN.replace("validation = 0.25", now))
    assert changed.network.train is not None
    with pytest.raises(NetspecError) as err:
        loop.fit(changed, changed.network.train, run, epochs=2, resume_from=run)
    assert says in err.value.diagnostics[0].message
    assert err.value.exit_code == EXIT_RUNTIME


def test_resume_with_the_same_optimizer_and_a_new_learning_rate_is_allowed(
    small: Analysis, tmp_path: Path
) -> None:
    spec = small.network.train
    assert spec is not None
    loop.fit(small, spec, tmp_path / "run", epochs=1)
    again = loop.fit(
        small, spec, tmp_path / "run", epochs=2, lr=0.001, resume_from=tmp_path / "run"
    )
    assert [h["epoch"] for h in again.history] == [1, 2]


# ---- penalties and clipping ------------------------------------------------------------------


def test_penalties_apply_to_weights_only_never_to_biases_or_batchnorm(tmp_path: Path) -> None:
    a = spec_file(
        tmp_path,
        "input x: [3, 4, 4]\n conv2d(2, 3) batchnorm relu\n flatten\n dense(2)",
        'data = "d.npz"',
    )
    assert penalised_names(a) == ["conv2d_1.weight", "dense_1.weight"]


def test_penalties_find_weights_whose_node_or_local_names_hold_dots(tmp_path: Path) -> None:
    a = spec_file(
        tmp_path,
        "input x: [5, 3]\n rnn = bidirectional(lstm(4))\n dense(2)",
        'data = "d.npz"',
    )
    assert penalised_names(a) == [
        "dense_1.weight",
        "rnn.bwd.weight_hh",
        "rnn.bwd.weight_ih",
        "rnn.fwd.weight_hh",
        "rnn.fwd.weight_ih",
    ]


def test_a_bidirectional_network_trains_with_a_penalty(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, :, 0].sum(axis=1) > 0).astype(np.int64))
    a = spec_file(
        tmp_path,
        "input x: [5, 3]\n bidirectional(gru(8))\n dense(2)",
        'data = "d.npz"  loss = cross_entropy  optimizer = adam(lr=0.02)  l2 = 0.0001\n'
        "batch = 16  epochs = 15  seed = 1",
    )
    assert a.network.train is not None
    result = loop.fit(a, a.network.train, tmp_path / "run")
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


def test_l2_penalty_adds_twice_l2_w_to_the_gradient() -> None:
    w = np.array([1.0, -2.0], np.float32)
    grads = {"d.weight": np.zeros(2, np.float32)}
    total = add_penalty({"d.weight": w}, grads, ["d.weight"], l1=0.0, l2=0.1)
    assert total == pytest.approx(0.1 * 5)
    np.testing.assert_allclose(grads["d.weight"], 2 * 0.1 * w)


def test_l1_penalty_adds_l1_sign_w_and_matches_torch_autograd() -> None:
    import torch

    w = np.array([1.5, -2.0, 0.25, -0.5], np.float64)
    grads = {"d.weight": np.full(4, 0.3)}
    total = add_penalty({"d.weight": w}, grads, ["d.weight"], l1=0.01, l2=0.0)
    tw = torch.tensor(w, requires_grad=True)
    ref = 0.01 * tw.abs().sum()
    ref.backward()
    assert total == pytest.approx(ref.item())
    np.testing.assert_allclose(grads["d.weight"], 0.3 + tw.grad.numpy())


def test_l1_and_l2_together_add_both_terms() -> None:
    w = np.array([2.0, -1.0])
    grads = {"d.weight": np.zeros(2)}
    total = add_penalty({"d.weight": w}, grads, ["d.weight"], l1=0.1, l2=0.01)
    assert total == pytest.approx(0.1 * 3 + 0.01 * 5)
    np.testing.assert_allclose(grads["d.weight"], 0.1 * np.sign(w) + 2 * 0.01 * w)


def test_clip_norm_rescales_the_global_gradient_norm() -> None:
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([4.0], np.float32)}
    clip(grads, 1.0)
    norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    assert norm == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(grads["a"] / grads["b"][0], [0.75, 0.0], rtol=1e-6)


def test_weights_files_with_pickled_objects_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", **{"dense_1.weight": np.array([None, 1], dtype=object)})
    with pytest.raises(NetspecError) as err:
        load_arrays(tmp_path / "w.npz")
    assert "unpickling" in err.value.diagnostics[0].message
    assert err.value.exit_code == EXIT_RUNTIME


def test_checkpoint_round_trips_arrays_and_json_metadata(tmp_path: Path) -> None:
    state = ckpt.Checkpoint(
        params={"d.weight": np.arange(6, dtype=np.float32).reshape(2, 3)},
        optimizer={"step": np.array(3), "m.d.weight": np.ones((2, 3), np.float32)},
        meta={"epoch": 2, "rng": np.random.default_rng(5).bit_generator.state},
        best={"d.weight": np.zeros((2, 3), np.float32)},
    )
    ckpt.save_checkpoint(tmp_path / "c.npz", state)
    back = ckpt.load_checkpoint(tmp_path / "c.npz")
    assert same(back.params, state.params) and same(back.optimizer, state.optimizer)
    assert back.best is not None and same(back.best, state.best)  # type: ignore[arg-type]
    assert back.meta == state.meta
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert z["meta"].dtype == np.uint8  # JSON text, not a pickled object


def test_api_train_resumes_from_a_checkpoint_file_into_its_run_folder(
    small: Analysis, tmp_path: Path
) -> None:
    first = api.train(small, tmp_path / "run", epochs=1)
    again = api.train(small, resume=first.checkpoint_path, epochs=2)
    assert again.weights_path == tmp_path / "run" / "weights.npz"
    assert [h["epoch"] for h in again.history] == [1, 2]


@pytest.mark.parametrize(
    ("monitor", "hint"),
    [
        (
            "val_acc",
            "did you mean 'val_accuracy'? this run computes loss, accuracy, val_loss, val_accuracy",
        ),
        ("f1", "this run computes loss, accuracy, val_loss, val_accuracy"),
    ],
)
def test_an_early_stopping_monitor_the_run_does_not_compute_is_refused_before_training(
    tmp_path: Path, monitor: str, hint: str
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    a = spec_file(
        tmp_path,
        SMALL,
        SMALL_TRAIN + f'\nearly_stopping = early_stopping(monitor="{monitor}", patience=1)',
    )
    assert a.network.train is not None
    with pytest.raises(NetspecError) as err:
        loop.fit(a, a.network.train, tmp_path / "run")
    (d,) = err.value.diagnostics
    assert d.message == f"early stopping monitors '{monitor}', which this run does not compute"
    assert d.hint == hint
    assert not (tmp_path / "run").exists()  # refused before anything ran or was written


def test_history_json_stays_json_when_a_validation_loss_is_not_finite() -> None:
    """JSON has no NaN: such a value (a validation loss that overflowed) is written null."""
    history = [{"epoch": 1, "loss": 0.5, "val_loss": float("nan"), "val_mse": float("inf")}]
    text = history_json(history)
    (record,) = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert record == {"epoch": 1, "loss": 0.5, "val_loss": None, "val_mse": None}


def test_history_json_holds_the_records_exactly_one_epoch_a_line() -> None:
    """Encoded by json's C encoder a record at a time (the indented encoder is pure Python):
    the same values, nested lists (a confusion matrix) included, and an empty run is []."""
    history = [
        {"epoch": 1, "loss": 0.25, "val_loss": None, "confusion": [[1, 0], [0, 1]], "tag": "a"},
        {"epoch": 2, "loss": 1e-300, "val_loss": 0.1, "confusion": [[2, 0], [0, 0]], "tag": "é"},
    ]
    text = history_json(history)
    assert json.loads(text) == history
    assert text.splitlines()[0] == "[" and text.splitlines()[-1] == "]" and text.endswith("\n")
    assert [json.loads(line.rstrip(",")) for line in text.splitlines()[1:-1]] == history
    assert json.loads(history_json([])) == []


def test_a_monitored_value_that_is_not_finite_is_never_the_best() -> None:
    stopper = Stopper("val_loss", "min", patience=2, min_delta=0.0)
    params: dict[str, np.ndarray] = {"w": np.zeros(1)}
    assert not stopper.update(1, float("nan"), params, keep=False)
    assert not stopper.update(2, 0.5, params, keep=False)  # a NaN first did not block this
    assert (stopper.best, stopper.best_epoch) == (0.5, 2)
    assert not stopper.update(3, float("nan"), params, keep=False)
    assert stopper.best_epoch == 2 and stopper.wait == 1


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
def test_probability_rows_train_cross_entropy_and_are_refused_by_a_loss_that_needs_classes(
    tmp_path: Path, loss: str
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    soft = np.exp(x[:, :3]) / np.exp(x[:, :3]).sum(axis=1, keepdims=True)
    np.savez(tmp_path / "d.npz", x=x, y=soft.astype(np.float32))
    a = spec_file(
        tmp_path, SMALL, f'data = "d.npz"  loss = {loss}  optimizer = adam(lr=0.01)  epochs = 30'
    )
    assert a.network.train is not None
    if loss == "hinge":
        with pytest.raises(NetspecError, match="holds probabilities"):
            loop.fit(a, a.network.train, tmp_path / "run")
        return
    history = loop.fit(a, a.network.train, tmp_path / "run").history
    # Soft targets bound the loss below by their entropy; argmaxed labels would fit past it.
    entropy = float(-(soft * np.log(soft)).sum(axis=1).mean())
    assert entropy - 1e-4 <= history[-1]["loss"] < history[0]["loss"]


def test_eval_of_a_token_network_whose_recipe_normalises_needs_no_statistics(
    tmp_path: Path,
) -> None:
    """Training fits none for token ids: eval must not ask for them (export and predict did
    not)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 10, (40, 5)), y=rng.integers(0, 2, 40))
    a = spec_file(
        tmp_path,
        "input x: int64[5]\n embedding(10, 4)\n flatten\n dense(2)",
        'data = npz("d.npz", normalize="standard")  loss = cross_entropy  epochs = 1',
    )
    assert a.network.train is not None
    result = loop.fit(a, a.network.train, tmp_path / "run")
    assert not (tmp_path / "run" / ckpt.NORMALIZATION).exists()
    assert api.evaluate(a, result.weights_path).samples == 40


def test_resume_with_another_early_stopping_monitor_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    recipe = SMALL_TRAIN + '\nearly_stopping = early_stopping(monitor="{}", patience=5)'
    first = spec_file(tmp_path, SMALL, recipe.format("val_loss"))
    assert first.network.train is not None
    loop.fit(first, first.network.train, tmp_path / "run", epochs=1)
    changed = spec_file(tmp_path, SMALL, recipe.format("val_accuracy"))
    assert changed.network.train is not None
    with pytest.raises(NetspecError, match="stopped early on val_loss; the recipe now monitors"):
        loop.fit(changed, changed.network.train, tmp_path / "run", resume_from=tmp_path / "run")
