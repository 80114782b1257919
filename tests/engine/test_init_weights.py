"""`netspec train --init-weights W`: a run starts from W (both engines), checked by name and
shape with every mismatch listed, PyTorch's batchnorm counters dropped with a note, and refused
beside --resume or where the run would overwrite W."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.cli import main

SPEC = """
network Tiny {
  input x: [4]
  dense(8)
  batchnorm
  tanh
  dense(3)
}
train Tiny {
  data = "d.npz"
  loss = cross_entropy
  optimizer = sgd(lr=LR)
  epochs = 1
  batch = 16
}
"""


def _project(tmp_path: Path, lr: str = "0.1") -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(x[:, :3], axis=1))
    spec = tmp_path / "tiny.net"
    spec.write_text(SPEC.replace("LR", lr), encoding="utf-8")
    return spec


def _given(tmp_path: Path) -> dict[str, np.ndarray]:
    """Weights unlike any initialiser's: every array a distinct constant pattern."""
    analysis = api.check(api.load(_project(tmp_path)))
    from netspec.runs import expected_shapes

    rng = np.random.default_rng(7)
    out = {
        k: rng.uniform(0.5, 1.5, size=s).astype(np.float32)
        for k, s in expected_shapes(analysis).items()
    }
    np.savez(tmp_path / "given.npz", **out)
    return out


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_run_starts_from_the_given_weights(tmp_path: Path, engine: str) -> None:
    given = _given(tmp_path)
    # A learning rate too small to move a float32 weight: the weights a run ends with are the
    # ones it started from, except the running statistics, which training moves.
    spec = _project(tmp_path, lr="1e-30")
    analysis = api.check(api.load(spec))
    result = api.train(
        analysis,
        tmp_path / "run",
        init_weights=tmp_path / "given.npz",
        engine=engine,  # type: ignore[arg-type]
        device="cpu" if engine == "torch" else None,
        curves=False,
    )
    for name, value in given.items():
        if "running" in name:
            assert not np.array_equal(result.params[name], value), name
        else:
            assert np.array_equal(result.params[name], value), name
    fresh = api.train(analysis, tmp_path / "fresh", curves=False)
    assert not np.array_equal(fresh.params["dense_1.weight"], given["dense_1.weight"])


def test_every_mismatch_is_listed_with_both_shapes_and_a_nearest_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = _given(tmp_path)
    given["dense_1.wieght"] = given.pop("dense_1.weight")
    given["dense_2.weight"] = given["dense_2.weight"].T.copy()
    del given["batchnorm_1.running_var"]
    given["head.bias"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "bad.npz", **given)
    spec = tmp_path / "tiny.net"
    code = main(
        [
            "train",
            str(spec),
            "--out",
            str(tmp_path / "o"),
            "--init-weights",
            str(tmp_path / "bad.npz"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "2 missing, 2 unexpected, 1 of the wrong shape" in err
    assert "missing 'dense_1.weight' (shape [8, 4])" in err
    assert "missing 'batchnorm_1.running_var' (shape [8])" in err
    assert "unexpected 'dense_1.wieght'" in err and "did you mean 'dense_1.weight'?" in err
    assert "unexpected 'head.bias'" in err
    assert "'dense_2.weight' has shape [8, 3]; the network's is [3, 8]" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_a_pytorch_state_dicts_batch_counters_are_dropped_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    given = _given(tmp_path)
    given["batchnorm_1.num_batches_tracked"] = np.array(12, np.int64)
    np.savez(tmp_path / "sd.npz", **given)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny.net", "--out", "o", "--init-weights", "sd.npz"]) == 0
    err = capsys.readouterr().err
    assert "ignored 1 num_batches_tracked array(s) (batchnorm_1.num_batches_tracked)" in err
    assert "batchnorm_1.num_batches_tracked" not in np.load(tmp_path / "o" / "weights.npz")


def test_init_weights_with_resume_or_into_its_own_run_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "tiny.net", "--out", "a"]) == 0
    before = (tmp_path / "a" / "weights.npz").read_bytes()
    capsys.readouterr()
    both = ["train", "tiny.net", "--init-weights", "a/weights.npz", "--resume", "a"]
    assert main(both) == 2
    assert "--init-weights and --resume are two ways to start a run" in capsys.readouterr().err
    assert main(["train", "tiny.net", "--init-weights", "a/weights.npz", "--out", "a"]) == 2
    assert "would replace the weights it started from" in capsys.readouterr().err
    assert (tmp_path / "a" / "weights.npz").read_bytes() == before
    assert main(["train", "tiny.net", "--init-weights", "a/checkpoint.npz", "--out", "b"]) == 3
    assert "is a training checkpoint, not a weights file" in capsys.readouterr().err
