"""Text from a causal language model (`netspec sample`): a [T] int64 input of token ids, a
[T, V] output of next-token scores at each position, and a vocabulary mapping id i to text.

The context window is the input's T positions. A context shorter than T sits at positions
0..L-1 with the rest padded (id 0); the scores at position L-1 are read, which the padding
cannot change because the network is causal. That is checked, not assumed: the network runs
on two sequences that differ only from the middle on, and every score before the middle
must agree. So a spec that forgot `causal=true` is refused, whatever op mixes positions.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from netspec.arrays import read_npz
from netspec.engine.executor import Executor
from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, EXIT_USAGE, NetspecError, printable
from netspec.ir import Analysis
from netspec.ops.base import Array, Ctx, Params
from netspec.runs import check_weights, expected_shapes, load_trained


def _fail(message: str, hint: str | None = None, exit_code: int = EXIT_RUNTIME) -> NetspecError:
    return NetspecError.at(message, hint=hint, exit_code=exit_code)


def window(analysis: Analysis) -> tuple[int, int]:
    """(T, V): the context length and vocabulary size of a token-in, scores-out network."""
    net = analysis.network
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise _fail(
            f"sample runs a network of one input and one output; {net.name} has "
            f"{len(net.inputs)} and {len(net.outputs)}",
            exit_code=EXIT_SPEC,
        )
    shape, out = analysis.shape(net.inputs[0].name), analysis.shape(net.outputs[0])
    dtype = getattr(net.inputs[0].op, "dtype", "float32")
    if dtype != "int64" or len(shape) != 1 or len(out) != 2 or out[0] != shape[0]:
        raise _fail(
            f"sample needs token ids in and next-token scores out, an int64[T] input and a "
            f"[T, V] output; {net.name} takes {dtype}{list(shape)} and gives {list(out)}",
            "see specs/char_gpt.net",
            exit_code=EXIT_SPEC,
        )
    return shape[0], out[1]


def _scores(executor: Executor, analysis: Analysis, params: Params, ids: Array) -> Array:
    """Raw scores (N, T, V) for token ids (N, T), in inference mode."""
    net = analysis.network
    outs, _ = executor.forward({net.inputs[0].name: ids}, params, Ctx(), False)
    return np.asarray(outs[net.outputs[0]], dtype=np.float64)


def check_causal(executor: Executor, analysis: Analysis, params: Params, v: int) -> None:
    """Refuse a network whose score at a position depends on later positions."""
    t = analysis.shape(analysis.network.inputs[0].name)[0]
    if t < 2:
        return
    rng = np.random.default_rng(0)
    a = rng.integers(0, v, (1, t))
    b = a.copy()
    half = t // 2
    b[0, half:] = (a[0, half:] + 1 + rng.integers(0, v - 1, t - half)) % v if v > 1 else 0
    sa, sb = (_scores(executor, analysis, params, ids) for ids in (a, b))
    if not np.allclose(sa[0, :half], sb[0, :half], rtol=1e-4, atol=1e-5):
        raise _fail(
            f"{analysis.network.name} is not causal: its scores at a position change with the "
            "tokens after it, so it cannot generate text one token at a time",
            "give every attention causal=true (and no bidirectional or pooling layer)",
            exit_code=EXIT_SPEC,
        )


# Typographic characters a prompt pasted from elsewhere often holds, and their plain forms.
_PLAIN = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}


def _near(ch: str) -> list[str]:
    """Characters a vocabulary may hold in place of `ch`: its other case, its plain form
    (e with its accent dropped, a straight quote for a curly one)."""
    plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    return [ch.lower(), ch.upper(), _PLAIN.get(ch, ""), plain, plain.lower(), plain.upper()]


def encode(prompt: str, vocab: Sequence[str]) -> list[int]:
    """The prompt's ids; a character outside the vocabulary is named, with a near one."""
    index = {c: i for i, c in enumerate(vocab)}
    for position, ch in enumerate(prompt):
        if ch in index:
            continue
        near = next((c for c in _near(ch) if c in index), None)
        shown = "".join(sorted(vocab)).replace("\n", "")
        raise _fail(
            f"the prompt's character {printable(repr(ch))} (at {position}) is not in the "
            f"vocabulary the network was trained on ({len(vocab)} characters)",
            f"did you mean {printable(repr(near))}?"
            if near is not None
            else f"the vocabulary: {printable(shown)}",
            exit_code=EXIT_USAGE,
        )
    if not prompt:
        raise _fail(
            "the prompt is empty", "give at least one character: --prompt 'In the'", EXIT_USAGE
        )
    return [index[c] for c in prompt]


def generate(
    analysis: Analysis,
    params: Params,
    vocab: Sequence[str],
    prompt: str,
    length: int,
    temperature: float,
    seed: int,
) -> str:
    """The prompt followed by `length` sampled tokens (softmax(scores / temperature))."""
    t, v = window(analysis)
    if v != len(vocab):
        raise _fail(
            f"the vocabulary has {len(vocab)} entries but the network scores {v} tokens",
            "use the vocabulary of the data the network was trained on",
        )
    check_weights(params, expected_shapes(analysis), "the weights")
    params = {k: np.asarray(a, dtype=np.float32) for k, a in params.items()}
    executor = Executor(analysis)
    check_causal(executor, analysis, params, v)
    ids = encode(prompt, vocab)
    rng = np.random.default_rng(seed)
    for _ in range(length):
        context = ids[-t:]
        x = np.zeros((1, t), dtype=np.int64)
        x[0, : len(context)] = context
        logits = _scores(executor, analysis, params, x)[0, len(context) - 1] / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(v, p=p / p.sum())))
    return "".join(vocab[i] for i in ids)


def vocabulary(analysis: Analysis, path: str | Path | None) -> list[str]:
    """The characters of ids 0..V-1: the `vocab` array (code points) of `path`, or by default
    of the recipe's data, as examples/char_corpus.py writes it."""
    recipe = analysis.network.train
    if path is None:
        if recipe is None or recipe.data is None or not recipe.data.path.endswith(".npz"):
            raise _fail(
                f"{analysis.network.name}'s recipe names no .npz data to read the vocabulary from",
                "name it: --vocab FILE.npz (an array `vocab` of code points, as "
                "examples/char_corpus.py writes)",
            )
        path = recipe.data.path
    arrays = read_npz(Path(path), "vocabulary file", ["vocab"])
    if "vocab" not in arrays:
        raise _fail(
            f"{path} holds no array 'vocab' (the code point of each token id)",
            "make the data with examples/char_corpus.py, or pass --vocab FILE.npz",
        )
    codes = arrays["vocab"]
    if codes.ndim != 1 or codes.dtype.kind not in "iu":
        raise _fail(f"{path}: 'vocab' must be a 1-D array of integer code points")
    if codes.size and (codes.min() < 0 or codes.max() > sys.maxunicode):
        raise _fail(
            f"{path}: 'vocab' holds {int(codes.min())}..{int(codes.max())}, not code points"
        )
    if len(set(codes.tolist())) != len(codes):
        raise _fail(f"{path}: 'vocab' names a character twice, so an id would be ambiguous")
    return [chr(c) for c in codes.tolist()]


def sample_text(
    analysis: Analysis,
    weights: Path,
    prompt: str,
    *,
    length: int = 200,
    temperature: float = 1.0,
    seed: int = 0,
    vocab: str | Path | None = None,
) -> str:
    """`prompt` and `length` characters sampled after it, with the weights at `weights`."""
    if length < 0 or not temperature > 0:
        raise _fail("sample needs length >= 0 and temperature > 0", exit_code=EXIT_USAGE)
    chars = vocabulary(analysis, vocab)
    params = load_trained(weights, "none", "int64").params
    return generate(analysis, params, chars, prompt, length, temperature, seed)
