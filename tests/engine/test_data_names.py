"""`--x`/`--y` name the arrays of the data a command reads, and PyTorch's batchnorm step
counters in a weights file are left out with a note."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.subprocess_cli import netspec

SPEC = """
network Tiny {
  input x: [4]
  dense(8) batchnorm relu
  dense(3)
}
train Tiny {
  data = csv("iris.csv", y="species")
  loss = cross_entropy
  epochs = 1
  batch = 16
}
"""


def test_npz_data_for_a_csv_recipe_trains_by_the_npz_names_and_torch_counters_get_a_note(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(x[:, :3], axis=1), feats=x, cls=np.zeros(32))
    (tmp_path / "tiny.net").write_text(SPEC, encoding="utf-8")
    run = netspec("train", "tiny.net", "--data", "d.npz", "--out", "a", cwd=tmp_path)
    assert run.returncode == 0, run.stderr  # read d.npz's x and y, not a column 'species'
    run = netspec(
        "train",
        "tiny.net",
        "--data",
        "d.npz",
        "--x",
        "feats",
        "--y",
        "cls",
        "--out",
        "b",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    wrong = netspec("train", "tiny.net", "--data", "d.npz", "--y", "label", cwd=tmp_path)
    assert wrong.returncode == 3 and "has no array 'label'" in wrong.stderr

    # A state dict saved from PyTorch carries bn.num_batches_tracked beside running_mean.
    with np.load(tmp_path / "a" / "weights.npz") as w:
        weights = dict(w)
    (bn,) = {k.rpartition(".")[0] for k in weights if k.endswith("running_mean")}
    weights[f"{bn}.num_batches_tracked"] = np.array(2, np.int64)
    np.savez(tmp_path / "torch.npz", **weights)
    ev = netspec("eval", "tiny.net", "--weights", "torch.npz", "--data", "d.npz", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert f"note: ignored 1 num_batches_tracked array(s) ({bn}.num_batches_tracked)" in ev.stderr
    np.save(tmp_path / "x.npy", x[:2])
    pred = netspec(
        "predict", "tiny.net", "--weights", "torch.npz", "--input", "x.npy", cwd=tmp_path
    )
    assert pred.returncode == 0, pred.stderr
    assert "num_batches_tracked" in pred.stderr
