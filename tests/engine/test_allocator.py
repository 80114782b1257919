"""The malloc setting that stops every training step from page-faulting its arrays back in."""

from __future__ import annotations

import ctypes
import platform

import numpy as np
import pytest

from netspec.engine import allocator
from netspec.engine.executor import Executor

from .test_executor import analyse

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmapped blocks: what a fresh mmap per array shows up in
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_bytes() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    return int(libc.mallinfo2().hblkhd)


@glibc
def test_executor_serves_large_arrays_from_the_heap() -> None:
    Executor(analyse("input x: [4]\ndense(3)"))  # its module applied the setting on import
    assert allocator.keep_freed_memory()
    before = _mmapped_bytes()
    big = np.ones(8 << 20, dtype=np.uint8)  # 8 MiB: above glibc's 128 KiB default threshold
    grown = _mmapped_bytes() - before
    del big
    assert grown < 1 << 20, f"an 8 MiB array was mmapped ({grown} bytes): freed pages go back"


@glibc
def test_a_users_own_malloc_tuning_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert allocator.keep_freed_memory.__wrapped__() is False


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert allocator.keep_freed_memory.__wrapped__() is False
