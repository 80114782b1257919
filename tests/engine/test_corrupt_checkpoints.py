"""A checkpoint with one corrupted field is refused on load, naming the field (exit 3): it was
once used as it was, and a resumed run wrote weights the network could not load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspec import api
from netspec.arrays import decode_json, encode_json, load_arrays
from netspec.engine import trainer as loop
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.ir import Analysis

SPEC = """network N {
  input x: [4]
  dense(8) tanh
  dense(3)
}
train N {
  data = "d.npz"  loss = cross_entropy  optimizer = adam(lr=0.01)  epochs = 2  batch = 8
  validation = 0.25  seed = 7
  early_stopping = early_stopping(monitor="val_loss", patience=5)
}
"""

Arrays = dict[str, Any]


def _meta(edit: Callable[[dict[str, Any]], None]) -> Callable[[Arrays], None]:
    def change(arrays: Arrays) -> None:
        meta = decode_json(arrays["meta"])
        edit(meta)
        arrays["meta"] = encode_json(meta)

    return change


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _first(prefix: str, arrays: Arrays) -> str:
    return next(k for k in sorted(arrays) if k.startswith(prefix))


CORRUPTIONS: dict[str, tuple[Callable[[Arrays], None], str]] = {
    "rng state": (_meta(_set(("rng", "state", "state"), "x")), "rng state"),
    "history record": (_meta(_set(("history", 0), "oops")), "history record 1 is not"),
    "history value": (_meta(_set(("history", 1, "loss"), "low")), "record 2's 'loss' is not"),
    "stopping wait": (_meta(_set(("early_stopping", "wait"), -1)), "field 'wait'"),
    "stopping best": (_meta(_set(("early_stopping", "best"), [1])), "field 'best'"),
    "stopping record": (_meta(_set(("early_stopping",), "x")), "early_stopping record"),
    "best missing": (lambda a: a.pop(_first("best/", a)), "missing in best epoch's weights"),
    "best misshaped": (
        lambda a: a.update({_first("best/", a): np.zeros((2, 2), np.float32)}),
        "best epoch's weights (best/)",
    ),
    "best dtype": (
        lambda a: a.update({(k := _first("best/", a)): a[k].astype(np.int32)}),
        "weights are floats",
    ),
    "optimizer dtype": (
        lambda a: a.update({(k := _first("optimizer/m.", a)): a[k].astype(np.int64)}),
        "has dtype int64; it must be floats",
    ),
    "optimizer step": (
        lambda a: a.update({"optimizer/step": np.array(1 + 2j)}),
        "optimizer state 'step' has dtype complex128",
    ),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Analysis, Arrays]:
    folder = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(folder / "d.npz", x=x, y=np.argmax(x[:, :3], axis=1))
    (folder / "t.net").write_text(SPEC, encoding="utf-8")
    analysis = api.check(api.load(folder / "t.net"))
    assert analysis.network.train is not None
    loop.fit(analysis, analysis.network.train, folder / "run")
    arrays = load_arrays(folder / "run" / "checkpoint.npz")
    assert any(k.startswith("best/") for k in arrays)  # restore_best keeps them
    return analysis, arrays


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_corrupted_checkpoint_field_is_refused_on_resume_and_named(
    trained: tuple[Analysis, Arrays], tmp_path: Path, case: str
) -> None:
    analysis, original = trained
    arrays = dict(original)
    corrupt, words = CORRUPTIONS[case]
    corrupt(arrays)
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "checkpoint.npz", **arrays)
    assert analysis.network.train is not None
    with pytest.raises(NetspecError) as info:
        loop.fit(analysis, analysis.network.train, run, epochs=4, resume_from=run)
    assert info.value.exit_code == EXIT_RUNTIME
    assert words in str(info.value), str(info.value)
    assert not (run / "weights.npz").exists()
