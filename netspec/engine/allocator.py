"""Keep freed memory in the process, so a training step does not page-fault its arrays back in.

A NumPy step allocates and frees the same large arrays every time (activations, im2col
matrices, gradients). glibc's malloc serves anything over its mmap threshold (128 KiB at start,
raised adaptively to at most 32 MiB) with a fresh mmap and gives it back to the kernel on free,
and it trims the top of the heap whenever more than twice that threshold lies free there. Either
way the next step touches new pages, and the kernel zero-fills every one of them: on the LeNet
benchmark step (batch 64) that was 15 ms a step instead of 8 ms. (PyTorch's CPU tuning guide
recommends jemalloc or tcmalloc for the same reason.) Two `mallopt` calls fix it: serve arrays
up to 32 MiB from the heap and keep up to 1 GiB of free heap for reuse. Freed memory stays in
the process until it ends, as with any caching allocator; peak use grew by under 1 MiB on the
benchmark's memory rows.

The setting is process-wide, applied once, when the executor module is imported: applied after
a run has loaded its data, the switch fragments the heap (LeNet b256: +4.6 MiB peak). A user
who tuned glibc through its own environment variables (`MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`) keeps their choice; on other C libraries (macOS, musl, Windows)
nothing happens.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this parameter on 64-bit machines
TRIM_THRESHOLD = 1 << 30

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc for repeated large allocations; True when the setting took effect."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(var in os.environ for var in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
