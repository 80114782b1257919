"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A run killed at any moment leaves either the old file or the new one, never a partial one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from netspec.errors import EXIT_RUNTIME, NetspecError


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    if path.is_dir():
        raise NetspecError.at(
            f"cannot write {path}: it is a folder",
            hint="name a file, e.g. -o out/model.onnx",
            exit_code=EXIT_RUNTIME,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    def write(f: IO[bytes]) -> None:
        f.write(text.encode("utf-8"))

    atomic_write(path, write)
