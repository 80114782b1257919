"""`targets = inputs`: an autoencoder's recipe trains on its (normalised) inputs as targets, on
every engine, eval scores the same reconstruction, and a network that cannot give its input back
is refused by `check`, located, before any data are read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.arrays import load_arrays
from netspec.engine import trainer as numpy_engine
from netspec.errors import NetspecError
from netspec.ir import Analysis
from netspec.training.plan import load_splits, streams

RNG = np.random.default_rng(0)
X = RNG.uniform(0, 16, (40, 64)).astype(np.float32)
# Labels that fit no [1, 8, 8] output: a recipe reading them as targets would fail.
Y = RNG.integers(0, 10, 40)

AUTOENCODER = """
network AE {
  input image: [1, 8, 8]
  conv2d(4, 3, stride=2, padding=1) relu
  pixels = conv_transpose2d(1, 2, stride=2) sigmoid
}
train AE {
  data = npz("d.npz", normalize="minmax")
  targets = inputs
  loss = mse
  optimizer = adam(lr=0.01)
  batch = 8
  epochs = 3
  validation = 0.25
  seed = 0
}
"""


def write(tmp_path: Path, text: str) -> Path:
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    path = tmp_path / "ae.net"
    path.write_text(text, encoding="utf-8")
    return path


def analysed(tmp_path: Path, text: str = AUTOENCODER) -> Analysis:
    return api.check(api.load(write(tmp_path, text)))


def test_the_recipe_says_labels_unless_it_names_the_inputs(tmp_path: Path) -> None:
    spec = analysed(tmp_path).network.train
    assert spec is not None and spec.targets == "inputs"
    plain = AUTOENCODER.replace("  targets = inputs\n", "")
    net = analysed(tmp_path, plain)
    assert net.network.train is not None and net.network.train.targets == "labels"
    with pytest.raises(NetspecError, match="do not fit"):  # labels (40,) are no pixels
        load_splits(net, net.network.train, None, streams(0)[1])


def test_the_targets_are_the_normalised_inputs_of_each_split(tmp_path: Path) -> None:
    analysis = analysed(tmp_path)
    spec = analysis.network.train
    assert spec is not None
    splits = load_splits(analysis, spec, None, streams(0)[1])
    assert splits.val is not None and splits.normalizer is not None
    for part in (splits.train, splits.val):
        assert part.y.shape == part.x.shape == (len(part), 1, 8, 8)
        assert part.y.dtype == np.float32
        np.testing.assert_array_equal(part.y, part.x)
    # minmax from the training split only: its pixels lie in [0, 1]
    assert splits.train.y.min() >= 0 and splits.train.y.max() <= 1
    assert not np.array_equal(splits.train.y.reshape(-1, 64), X[: len(splits.train)])


def reconstruction_error(analysis: Analysis, weights: Path) -> float:
    """The mse of the weights' output on the validation split's normalised inputs, from predict."""
    spec = analysis.network.train
    assert spec is not None
    val = load_splits(analysis, spec, None, streams(spec.seed)[1]).val
    assert val is not None
    out, _ = api.predict(analysis, {"image": val.x}, params=dict(load_arrays(weights)))
    return float(np.mean((out[analysis.network.outputs[0]] - val.x) ** 2))


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_each_engine_learns_to_give_back_its_input_and_eval_agrees(
    engine: str, tmp_path: Path
) -> None:
    analysis = analysed(tmp_path)
    spec = analysis.network.train
    assert spec is not None
    if engine == "numpy":
        result = numpy_engine.fit(analysis, spec, tmp_path / "run")
    else:
        from netspec.torch.trainer import fit as torch_fit

        result = torch_fit(analysis, spec, tmp_path / "run", device="cpu")
    losses = [e["val_loss"] for e in result.history]
    assert losses[-1] < losses[0]
    ev = api.evaluate(analysis, result.weights_path)
    assert ev.samples == 10
    assert ev.metrics["loss"] == pytest.approx(losses[-1], rel=1e-5)
    assert ev.metrics["loss"] == pytest.approx(
        reconstruction_error(analysis, result.weights_path), rel=1e-4
    )
