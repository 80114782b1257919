"""CSV labels given as class names (`setosa`): mapped to indices, recorded in the run, used by
eval and predict, and said in train's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netspec.errors import NetspecError
from netspec.recipe import DataSpec
from netspec.training.data import class_indices, load_data
from tests.subprocess_cli import netspec

SPEC = """
network Iris {{
  input x: [2]
  dense(3)
}}
train Iris {{
  data = csv("iris.csv", y="species")
  loss = cross_entropy
  optimizer = adam(lr=0.1)
  epochs = 30
  batch = 8
  {labels}
}}
"""
NAMES = ("setosa", "versicolor", "virginica")


def write_csv(path: Path, header: bool = True, n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(0)
    k = np.arange(n) % 3
    x = rng.normal(size=(n, 2)) * 0.1 + np.stack([k, -k], axis=1)
    lines = ["a,b,species"] if header else []
    lines += [f"{u:.4f},{v:.4f},{NAMES[c]}" for (u, v), c in zip(x, k, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return k


@pytest.mark.parametrize("header", [True, False])
def test_a_text_label_column_is_read_as_names_and_a_column_of_names_is_no_header(
    tmp_path: Path, header: bool
) -> None:
    write_csv(tmp_path / "iris.csv", header)
    y = "species" if header else "y"
    d = load_data(DataSpec(name="csv", path=str(tmp_path / "iris.csv"), y=y), (2,))
    assert len(d) == 30 and d.y.tolist()[:3] == list(NAMES)


def test_a_text_feature_is_refused_naming_its_line(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("a,b,c\n1,2,x\n1,oops,y\n", encoding="utf-8")
    with pytest.raises(NetspecError) as err:
        load_data(DataSpec(name="csv", path=str(tmp_path / "bad.csv"), y="c"), (2,))
    assert "line 3" in err.value.diagnostics[0].message


def test_class_names_train_by_the_sorted_set_and_eval_and_predict_use_the_runs_mapping(
    tmp_path: Path,
) -> None:
    k = write_csv(tmp_path / "iris.csv")
    (tmp_path / "iris.net").write_text(SPEC.format(labels=""), encoding="utf-8")
    run = netspec("train", "iris.net", "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "class names mapped to indices: setosa=0, versicolor=1, virginica=2" in run.stderr
    # Eval on a file holding only the last class: the sorted set of its own names would map
    # virginica to 0; the run's record keeps it 2.
    lines = (tmp_path / "iris.csv").read_text(encoding="utf-8").splitlines()
    only = [lines[0]] + [ln for ln in lines[1:] if ln.endswith("virginica")]
    (tmp_path / "v.csv").write_text("\n".join(only) + "\n", encoding="utf-8")
    ev = netspec("eval", "iris.net", "--weights", "out", "--data", "v.csv", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["accuracy"] == 1.0
    x = np.array([[float(v) for v in ln.split(",")[:2]] for ln in lines[1:4]], np.float32)
    np.save(tmp_path / "x.npy", x)
    pred = netspec("predict", "iris.net", "--weights", "out", "--input", "x.npy", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    shown = [ln.split(":")[0].split("] ")[1] for ln in pred.stdout.splitlines() if "] " in ln]
    assert shown == [NAMES[c] for c in k[:3]]


def test_the_recipes_labels_fix_the_mapping_and_an_unknown_name_is_refused(
    tmp_path: Path,
) -> None:
    write_csv(tmp_path / "iris.csv")
    labels = 'labels = ["virginica", "setosa", "iris"]'
    (tmp_path / "iris.net").write_text(SPEC.format(labels=labels), encoding="utf-8")
    run = netspec("train", "iris.net", "--out", "out", "--epochs", "1", cwd=tmp_path)
    assert run.returncode == 3
    assert "label 'versicolor' is not one of the classes" in run.stderr
    assert "labels = [...]" in run.stderr


def test_the_recipes_labels_give_the_indices_in_their_order() -> None:
    y = np.array(["setosa", "virginica", "versicolor"])
    indices, names = class_indices(y, ("virginica", "versicolor", "setosa"), "d.csv")
    assert indices.tolist() == [2, 0, 1] and names == ("virginica", "versicolor", "setosa")
