"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A run killed at any moment leaves either the old file or the new one, never a partial one.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError


def check_output(path: Path, inputs: Iterable[Path], example: str) -> None:
    """Refuse, before any work, an output path that is a folder, a device or a pipe, or that
    names one of the command's own inputs (`compile v.net -o v.net` would replace the spec with
    its JSON). `example` is a file name of the command's format, for the hint."""
    if path.is_dir():
        raise NetspecError.at(
            f"cannot write {path}: it is a folder",
            hint=f"name a file, e.g. -o {path / example}",
            exit_code=EXIT_RUNTIME,
        )
    _refuse_special(path)
    for source in inputs:
        if same_file(path, source):
            raise NetspecError.at(
                f"the output {path} is this command's input {source}: writing it would replace it",
                hint="choose another output file",
                exit_code=EXIT_USAGE,
            )


def _refuse_special(path: Path) -> None:
    """An existing output must be a regular file: the atomic rename would replace a device
    (`-o /dev/null`, as root) or a FIFO with a plain file and report success."""
    try:
        mode = path.stat().st_mode
    except (OSError, RuntimeError):  # a new path (or one that cannot be read: mkstemp says why)
        return
    if not stat.S_ISREG(mode):
        what = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
        raise NetspecError.at(
            f"cannot write {path}: it is {what}",
            hint="name a new file or a regular file to replace",
            exit_code=EXIT_USAGE,
        )


def same_file(a: Path, b: Path) -> bool:
    """One file under two names: the same resolved path, or (links) the same inode."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return False


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], *, durable: bool = True) -> None:
    """Write `path` through a temporary beside it and a rename: readers see the old file or
    the new one, never a part. `durable` fsyncs before the rename (5-15 ms a file on this
    disk), for a file that must survive a power cut, not merely a crash of the writer."""
    if path.is_dir():
        raise NetspecError.at(
            f"cannot write {path}: it is a folder",
            hint="name a file, not a folder",
            exit_code=EXIT_RUNTIME,
        )
    _refuse_special(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a file where a folder should be, no permission, a read-only disk
        raise _cannot_write(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file private (0600); give it the mode a plain open() would.
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            write(f)  # its OSErrors (a full disk) stay OSErrors: train reports them its way
            f.flush()
            if durable:
                os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _cannot_write(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cannot_write(path: Path, e: OSError) -> NetspecError:
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    return NetspecError.at(
        f"cannot write {path}: {e.strerror or e}"
        + (f" ({blocked} is a file, not a folder)" if blocked is not None else ""),
        hint="choose an output path in a folder you can write to",
        exit_code=EXIT_RUNTIME,
    )


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    def write(f: IO[bytes]) -> None:
        f.write(text.encode("utf-8"))

    atomic_write(path, write, durable=durable)
