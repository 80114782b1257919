"""How long `netspec check` takes on the deepest specs, start-up included.

    .venv/bin/python benchmarks/check_speed.py [--repeat 5] [specs/x.net ...]

Wall time of the CLI as a subprocess (what a user waits for: interpreter start, imports,
parse, expand, analyse, table), then the same pipeline in-process, split by stage.
Target: well under 1 s wall for each spec.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPECS = ("specs/resnet152.net", "specs/resnet1202.net")
T = TypeVar("T")


def _summary(label: str, times: list[float]) -> str:
    return (
        f"{label:<34} median {statistics.median(times) * 1000:8.1f} ms   "
        f"min {min(times) * 1000:8.1f}   max {max(times) * 1000:8.1f}   (n={len(times)})"
    )


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def time_cli(spec: str, repeat: int) -> list[float]:
    """Wall time of `python -m netspec check SPEC` in a fresh interpreter, after one warm-up."""
    cmd = [sys.executable, "-m", "netspec", "check", spec]
    # What a user's machine does: .pyc files are written once and reused. These build machines
    # set PYTHONDONTWRITEBYTECODE=1, which would recompile every module on every start (+0.4 s).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for i in range(repeat + 1):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
        if i > 0:  # the first run warms the disk cache and .pyc files
            times.append(elapsed)
    return times


def time_stages(spec: str, repeat: int) -> dict[str, list[float]]:
    """Parse (with imports), expand and analyse, each timed in this process."""
    from netspec.expand import expand, load_program
    from netspec.graph import analyse

    path = ROOT / spec
    stages: dict[str, list[float]] = {"parse": [], "expand": [], "analyse": []}
    for i in range(repeat + 1):
        t_parse, program = _timed(lambda: load_program(path))
        t_expand, net = _timed(lambda: expand(program))  # noqa: B023 (called at once)
        t_analyse, _ = _timed(lambda: analyse(net))  # noqa: B023
        if i > 0:  # the first run pays the imports and warms caches
            for name, t in (("parse", t_parse), ("expand", t_expand), ("analyse", t_analyse)):
                stages[name].append(t)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=list(DEFAULT_SPECS))
    parser.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up")
    args = parser.parse_args()
    for spec in args.specs:
        print(spec)
        print("  " + _summary("netspec check (subprocess, wall)", time_cli(spec, args.repeat)))
        for name, times in time_stages(spec, args.repeat).items():
            print("  " + _summary(f"  in-process {name}", times))


if __name__ == "__main__":
    main()
