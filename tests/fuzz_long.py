"""`make fuzz`: the fuzz suite's long mode, run for a set time rather than a set count.

    python -m tests.fuzz_long [--seconds 300] [--seed N]   (or NETSPEC_FUZZ_SECONDS=300)

Each input (a mutated spec from specs/, a random well-formed network, random text or a
pathological nesting) goes through `check`, and each mutated data or weights file (.npz, .npy,
.idx, .csv) through the loaders; anything but success or a NetspecError (with a location, for
specs) is a failure, and so is an input that takes longer than --per-input seconds. Failing
inputs are saved under build/fuzz/ for a reproducer. Prints how many inputs were tried; exits 1
on any failure.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tests.fuzzing import (
    SPECS,
    attack_spec,
    binary_originals,
    check_binary_bytes,
    check_bytes,
    check_device_output,
    check_hostile_ir,
    check_symlinked_import,
    device_output,
    hostile_ir,
    mutate,
    mutate_bytes,
    random_network,
    symlinked_import,
)

ROOT = Path(__file__).resolve().parent.parent
ALPHABET = "network{}()[]=,:->*+#\n xyz0123456789.\"'"


class HangError(Exception):
    """One input ran past its time limit."""


def _check_binary(data: bytes, tmp: Path, suffix: str) -> None:
    check_binary_bytes(data, suffix, tmp)


def _mutated(rng: random.Random) -> bytes:
    data = rng.choice(SPECS).read_bytes()
    for _ in range(rng.randrange(1, 4)):
        data = mutate(data, rng)
    return data


def _text(rng: random.Random) -> bytes:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(120))).encode()


def _pathological(rng: random.Random) -> bytes:
    depth = rng.choice([10, 1000, 5000, 20000])
    return rng.choice(
        [
            f"network N {{ input x: [4]\n dense({'(' * depth}1{')' * depth}) }}",
            f"const A = {'-' * depth}1\nnetwork N {{ input x: [A]\n relu }}",
            f"network N {{ input x: [4]\n relu * {depth * rng.randrange(1, 20)} }}",
            f"block B() {{ relu * {depth} }}\nnetwork N {{ input x: [4]\n B() * {depth} }}",
            f"network N {{ input x: [{'9' * rng.randrange(1, 40)}]\n dense({depth}) }}",
            "network N { input x: [4]\n" + "relu\n" * depth + "}",
        ]
    ).encode()


def _binary(suffix: str) -> Callable[[random.Random], bytes]:
    def make(rng: random.Random) -> bytes:
        data = binary_originals()[suffix]
        for _ in range(rng.randrange(1, 4)):
            data = mutate_bytes(data, rng)
        return data

    return make


# kind -> (generator, the check its inputs go through)
GENERATORS: dict[str, tuple[Callable[[random.Random], bytes], Callable[[bytes, Path], None]]] = {
    "mutated spec": (_mutated, check_bytes),
    "random network": (lambda rng: random_network(rng).encode(), check_bytes),
    "random text": (_text, check_bytes),
    "pathological": (_pathological, check_bytes),
    "attacker's spec": (attack_spec, check_bytes),
    "IR spans naming files": (hostile_ir, check_hostile_ir),
    "symlinked import": (symlinked_import, check_symlinked_import),
    "device-node output": (device_output, check_device_output),
    **{
        f"mutated {suffix}": (_binary(suffix), functools.partial(_check_binary, suffix=suffix))
        for suffix in (".npz", ".npy", ".idx", ".csv")
    },
}


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise HangError


def run(seconds: float, seed: int, per_input: int, out: Path) -> tuple[Counter[str], list[str]]:
    """Fuzz for `seconds`; the count of inputs by generator, and one line per failure."""
    rng = random.Random(seed)
    tried: Counter[str] = Counter()
    failures: list[str] = []
    signal.signal(signal.SIGALRM, _alarm)
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < deadline:
            kind = rng.choice(list(GENERATORS))
            generate, check = GENERATORS[kind]
            data = generate(rng)
            tried[kind] += 1
            signal.alarm(per_input)
            try:
                check(data, Path(tmp))
                problem = None
            except HangError:
                problem = f"took longer than {per_input} s"
            except Exception as e:  # the point of fuzzing: any other exception is a bug
                problem = "".join(traceback.format_exception_only(e)).strip()
            finally:
                signal.alarm(0)
            if problem is not None:
                out.mkdir(parents=True, exist_ok=True)
                saved = out / f"failure-{len(failures)}-{kind.split()[-1].strip('.')}"
                saved.write_bytes(data)
                failures.append(f"{kind}: {problem} (input saved as {saved})")
    return tried, failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--seconds", type=float, default=float(os.environ.get("NETSPEC_FUZZ_SECONDS", "300"))
    )
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--per-input", type=int, default=30, help="seconds before an input hangs")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "fuzz")
    args = p.parse_args(argv)
    print(f"fuzzing `check` for {args.seconds:g} s, seed {args.seed}", flush=True)
    tried, failures = run(args.seconds, args.seed, args.per_input, args.out)
    detail = ", ".join(f"{n} {kind}" for kind, n in sorted(tried.items()))
    print(f"{sum(tried.values())} inputs tried ({detail}); {len(failures)} failure(s)")
    for line in failures:
        print(f"  {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
