"""How long `netspec check` takes on the deepest specs, start-up included.

    .venv/bin/python benchmarks/check_speed.py [--repeat 5] [specs/x.net ...]
    .venv/bin/python benchmarks/check_speed.py --chain 10000,50000,199990 [--repeat 1]

Wall time of the CLI as a subprocess (what a user waits for: interpreter start, imports,
parse, expand, analyse, table), then the same pipeline in-process, split by stage.
Target: well under 1 s wall for each spec.

`--chain`: generated chains of N layers (`dense(3) * N`, and a block of two layers repeated
N/2 times), each checked by the CLI in a child: wall, CPU (user + system: what the machine's
load does not inflate) and the child's peak RSS. Target: a few seconds at 200,000 layers,
linear in N (2.4 s and 3.1 s wall, 300 and 319 MiB, on the 2-core VM: benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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


CHAINS = {
    "dense(3) * N": "network Big {{\n  input x: [8]\n  dense(3) * {n}\n}}\n",
    "block of 2 * N/2": (
        "block B(k: int = 3) {{\n  dense(k) relu\n}}\n"
        "network Big {{\n  input x: [8]\n  B * {half}\n}}\n"
    ),
}


def time_chain(text: str, repeat: int) -> tuple[float, float, float]:
    """Median wall and CPU seconds and the largest peak RSS (MiB) of `netspec check` on the
    spec `text`, each run in a fresh child (so that its peak is its own)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)  # and cwd=ROOT: `-c` puts the working folder first on the path
    walls, cpus, peak = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "big.net"
        spec.write_text(text, encoding="utf-8")
        cmd = [sys.executable, "-c", _CHILD, str(spec)]
        for _ in range(repeat):
            start = time.perf_counter()
            out = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False
            )
            walls.append(time.perf_counter() - start)
            if out.returncode != 0:
                raise SystemExit(f"check failed ({out.returncode}):\n{out.stderr[-2000:]}")
            cpu, rss = out.stdout.split()[-2:]
            cpus.append(float(cpu))
            peak = max(peak, float(rss) / 1024)
    return statistics.median(walls), statistics.median(cpus), peak


# The child checks the spec through the CLI, then prints its own CPU seconds and peak RSS (KiB).
_CHILD = """
import contextlib, io, resource, sys
from netspec.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["check", sys.argv[1]])
u = resource.getrusage(resource.RUSAGE_SELF)
print(u.ru_utime + u.ru_stime, u.ru_maxrss)
sys.exit(code)
"""


def chains(sizes: list[int], repeat: int) -> None:
    print(f"{'spec':<18} {'layers':>8} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13}")
    for label, template in CHAINS.items():
        for n in sizes:
            wall, cpu, rss = time_chain(template.format(n=n, half=n // 2), repeat)
            print(f"{label:<18} {n:>8,} {wall:>8.2f} {cpu:>8.2f} {rss:>13.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=list(DEFAULT_SPECS))
    parser.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--chain", help="comma-separated layer counts of generated chains")
    args = parser.parse_args()
    if args.chain:
        chains([int(n) for n in args.chain.split(",")], args.repeat)
        return
    for spec in args.specs:
        print(spec)
        print("  " + _summary("netspec check (subprocess, wall)", time_cli(spec, args.repeat)))
        for name, times in time_stages(spec, args.repeat).items():
            print("  " + _summary(f"  in-process {name}", times))


if __name__ == "__main__":
    main()
