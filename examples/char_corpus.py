"""Cut a text file into a character language model's training data (for specs/char_gpt.net).

    python examples/char_corpus.py examples/data/genesis.txt examples/data/genesis_chars.npz 32

The vocabulary is the text's sorted set of characters; id i is `vocab[i]`. The text is cut
into disjoint windows of T + 1 characters: x is a window's first T ids and y its last T, so
y[t] is the character that follows x[t] (next-character prediction at every position). The
.npz holds x and y (int64, [N, T]) and vocab (the characters, one per entry), which
`netspec sample` reads to map ids back to text. A trailing remainder shorter than a window is
dropped. Disjoint windows keep a random validation split free of text the training split saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def windows(text: str, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, vocab) for `text` cut into windows of `length` next-character predictions."""
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    n = (len(ids) - 1) // (length + 1)
    cut = ids[: n * (length + 1)].reshape(n, length + 1)
    return cut[:, :-1], cut[:, 1:], np.array([ord(c) for c in vocab], dtype=np.int32)


def main(source: str, out: str, length: str = "32") -> None:
    text = Path(source).read_text(encoding="utf-8")
    x, y, vocab = windows(text, int(length))
    target = Path(out)
    if target.resolve() == Path(source).resolve():
        raise SystemExit(f"char_corpus: {out} would replace the text it is made from")
    partial = target.with_name(target.name + ".partial.npz")
    np.savez_compressed(partial, x=x, y=y, vocab=vocab)
    partial.replace(target)  # atomically: a reader never sees half a file
    print(f"wrote {out}: {len(x)} windows of {x.shape[1]} characters, vocabulary {len(vocab)}")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit("usage: python examples/char_corpus.py TEXT OUT.npz [LENGTH]")
    main(*sys.argv[1:])
