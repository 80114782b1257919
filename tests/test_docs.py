"""The README: its op table is generated from the registry and must not drift; its examples run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netspec.docs import README, render_readme


def test_readme_op_table_matches_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    assert render_readme(text) == text, "run `make docs` (python -m netspec.docs)"


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    for folder in ("examples", "specs"):
        (tmp_path / folder).symlink_to(README.parent / folder)
    monkeypatch.chdir(tmp_path)
    with np.load(README.parent / "examples" / "data" / "digits.npz") as data:
        labels = data["y"][:5]  # of the five images the example predicts
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # the documented example, as written
    (probs,) = scope["outputs"].values()  # type: ignore[attr-defined]
    assert scope["provider"] == "CPUExecutionProvider"
    assert (probs.argmax(axis=1) == labels).mean() >= 0.75
    assert (tmp_path / "runs" / "digits" / "weights.npz").is_file()


def test_the_language_tours_networks_check(tmp_path: Path) -> None:
    """Every tour example that declares a network is a spec `check` accepts, as printed; the
    transformer block is transformer_encoder.net's, with its parameter count."""
    from netspec import api

    tour = README.read_text(encoding="utf-8").split("## A tour of the language", 1)[1]
    tour = tour.split("\n## ", 1)[0]
    blocks = tour.split("```\n")[1::2]  # opening and closing fences alike are bare
    nets = [b for b in blocks if "\nnetwork " in f"\n{b}"]
    assert len(nets) >= 4
    counts = []
    for i, body in enumerate(nets):
        path = tmp_path / f"tour{i}.net"
        path.write_text(body, encoding="utf-8")
        counts.append(api.check(api.load(path)).trainable_params)
    assert 172_290 in counts  # the transformer block's network
