"""Write a few raw digits from the bundled data as an .npy for `netspec predict` (make demo)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(out: str = "build/digits_sample.npy", count: int = 5) -> None:
    with np.load(HERE / "data" / "digits.npz", allow_pickle=False) as data:
        x, y = data["x"][-count:], data["y"][-count:]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.save(out, x.reshape(count, 1, 8, 8).astype(np.float32))
    print(f"wrote {out}: {count} digits, true labels {y.tolist()}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
