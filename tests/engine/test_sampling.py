"""`netspec sample`: text from a causal character model, its vocabulary from the data, and
the refusals (a non-causal network, a prompt character outside the vocabulary)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from netspec import api
from netspec.cli import main
from netspec.errors import EXIT_SPEC, EXIT_USAGE, NetspecError

ROOT = Path(__file__).resolve().parents[2]


def char_corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("char_corpus", ROOT / "examples/char_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = """
network Tiny {{
  input tokens: int64[8]
  embedding(4, 16)
  positional(8)
  attention(2, causal={causal})
  dense(4)
}}
train Tiny {{
  data = "abcd.npz"
  loss = cross_entropy
  optimizer = adam(lr=0.05)
  epochs = {epochs}
  batch = 16
}}
"""


def tiny(tmp_path: Path, causal: bool = True, epochs: int = 15) -> Path:
    """A tiny causal model trained on 'abcdabcd...', where every next character is certain."""
    x, y, vocab = char_corpus().windows("abcd" * 300, 8)
    np.savez(tmp_path / "abcd.npz", x=x, y=y, vocab=vocab)
    path = tmp_path / "tiny.net"
    path.write_text(TINY.format(causal=str(causal).lower(), epochs=epochs), encoding="utf-8")
    api.train(api.check(api.load(path)), tmp_path / "run", curves=False)
    return path


def test_the_corpus_windows_predict_the_next_character() -> None:
    x, y, vocab = char_corpus().windows("hello world", 3)
    chars = [chr(c) for c in vocab]
    assert "".join(chars[i] for i in x[0]) == "hel" and "".join(chars[i] for i in y[0]) == "ell"
    assert x.shape == y.shape == (2, 3) and x.dtype == np.int64


def test_a_trained_model_continues_the_pattern_past_its_context_window(tmp_path: Path) -> None:
    path = tiny(tmp_path)
    text = api.sample(api.check(api.load(path)), tmp_path / "run", "bc", length=20, temperature=0.1)
    assert text == "bc" + "dabc" * 5  # 22 characters: longer than the 8 the network sees


def test_the_same_seed_gives_the_same_text_and_another_seed_other_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny(tmp_path, epochs=1)
    args = ["sample", str(path), "--weights", str(tmp_path / "run"), "--prompt", "a"]
    runs = []
    for seed in ("1", "1", "2"):
        assert main([*args, "--length", "40", "--seed", seed, "--temperature", "3"]) == 0
        runs.append(capsys.readouterr().out.strip())
    assert runs[0] == runs[1] != runs[2]
    assert len(runs[0]) == 41 and set(runs[0]) <= set("abcd")


def test_a_network_that_sees_later_positions_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny(tmp_path, causal=False, epochs=1)
    args = ["sample", str(path), "--weights", str(tmp_path / "run"), "--prompt", "ab"]
    assert main(args) == EXIT_SPEC
    shown = capsys.readouterr().err
    assert "Tiny is not causal" in shown and "causal=true" in shown


def test_a_prompt_character_outside_the_vocabulary_is_named_with_its_nearest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny(tmp_path, epochs=1)
    args = ["sample", str(path), "--weights", str(tmp_path / "run")]
    assert main([*args, "--prompt", "abC"]) == EXIT_USAGE
    shown = capsys.readouterr().err
    assert "character 'C' (at 2) is not in the vocabulary" in shown and "'c'" in shown
    assert main([*args, "--prompt", "ab\u00e9"]) == EXIT_USAGE  # e with an accent
    assert "did you mean 'e'?" not in capsys.readouterr().err  # no e in a..d: the list instead
    assert main([*args, "--prompt", "xyz"]) == EXIT_USAGE
    assert "the vocabulary: abcd" in capsys.readouterr().err


def test_a_vocabulary_of_another_size_or_none_is_refused(tmp_path: Path) -> None:
    path = tiny(tmp_path, epochs=1)
    analysis = api.check(api.load(path))
    np.savez(tmp_path / "five.npz", vocab=np.array([ord(c) for c in "abcde"]))
    with pytest.raises(NetspecError) as err:
        api.sample(analysis, tmp_path / "run", "ab", vocab=tmp_path / "five.npz")
    assert "has 5 entries but the network scores 4" in str(err.value)
    np.savez(tmp_path / "none.npz", x=np.zeros(3))
    with pytest.raises(NetspecError) as err:
        api.sample(analysis, tmp_path / "run", "ab", vocab=tmp_path / "none.npz")
    assert "holds no array 'vocab'" in str(err.value)


def test_a_network_without_token_ids_in_and_scores_out_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mlp.net"
    path.write_text("network M {\n  input x: [4]\n  dense(3)\n}\n", encoding="utf-8")
    analysis = api.check(api.load(path))
    np.savez(
        tmp_path / "w.npz", **{"dense_1.weight": np.zeros((3, 4)), "dense_1.bias": np.zeros(3)}
    )
    np.savez(tmp_path / "v.npz", vocab=np.array([97, 98, 99]))
    with pytest.raises(NetspecError) as err:
        api.sample(analysis, tmp_path / "w.npz", "a", vocab=tmp_path / "v.npz")
    assert "an int64[T] input and a [T, V] output" in str(err.value)


def test_the_bundled_corpus_is_what_its_script_makes_of_the_text() -> None:
    text = (ROOT / "examples/data/genesis.txt").read_text(encoding="utf-8")
    x, y, vocab = char_corpus().windows(text, 32)
    with np.load(ROOT / "examples/data/genesis_chars.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["x"], x)
        np.testing.assert_array_equal(z["y"], y)
        np.testing.assert_array_equal(z["vocab"], vocab)
    assert len(vocab) == 60  # specs/char_gpt.net's `const vocab`
