"""How many BLAS threads a run uses, and the limit that holds them to it.

OpenBLAS's threads spin while they wait for work. Where every core is already busy, a second
thread only takes turns with the first: on a loaded 2-core machine a small ResNet trained at
62-66 samples/s with the default two threads against 523-633 with one. So the default counts
the cores nothing else is using (the usable cores less the 1-minute load average) and never
goes below one thread, which is the speed a busy machine gives anyway; an idle machine gets
every usable core. An explicit count (`--threads`, or OMP/OpenBLAS/MKL_NUM_THREADS in the
environment) is taken as given.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from netspec.errors import EXIT_USAGE, NetspecError

# The variables BLAS and OpenMP libraries read at start-up, in the order they are honoured.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why it was chosen (shown beside the progress bar)."""

    count: int
    reason: str

    def label(self) -> str:
        return f"{self.count} thread{'s' if self.count != 1 else ''} ({self.reason})"


def choose(
    requested: int | None,
    cores: int,
    load: float | None,
    environ: Mapping[str, str],
) -> ThreadChoice:
    """The rule: `requested`, else a count set in the environment, else the idle cores.

    `load` is the 1-minute load average (None where the system has none, as on Windows: then
    one thread, the count that is never slower on a busy machine).
    """
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    for name in THREAD_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return ThreadChoice(int(value), name)
    cores = max(1, cores)
    if load is None:
        return ThreadChoice(1, "load unknown")
    idle = math.floor(cores - load)
    return ThreadChoice(max(1, min(cores, idle)), f"load {load:.1f} on {cores} cores")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota is not None else cores)


def _cgroup_quota() -> int | None:
    """cgroup v2's cpu.max as whole cores (a container's share), or None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit() or parts[1] == "0":
        return None  # "max 100000": no quota
    return max(1, int(parts[0]) // int(parts[1]))


def load_average() -> float | None:
    """The 1-minute load average, or None where the system keeps none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def choose_here(requested: int | None = None) -> ThreadChoice:
    """The rule applied to this machine, now."""
    if requested is not None and requested < 1:
        raise NetspecError.at(f"threads must be at least 1, got {requested}", exit_code=EXIT_USAGE)
    return choose(requested, usable_cores(), load_average(), os.environ)


@contextlib.contextmanager
def limited(count: int) -> Iterator[None]:
    """Hold every loaded BLAS and OpenMP pool to `count` threads inside the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=count):
        yield
