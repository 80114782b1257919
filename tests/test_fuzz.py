"""Every input gets an answer: `check` succeeds or raises NetspecError with a location.

A bounded run here; `make fuzz` runs the long mode (tests/fuzz_long.py) for a set time.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_long
from tests.fuzzing import (
    SPECS,
    attack_spec,
    binary_originals,
    check_binary_bytes,
    check_bytes,
    check_device_output,
    check_hostile_ir,
    check_json_bytes,
    check_onnx_bytes,
    check_symlinked_import,
    device_output,
    hostile_ir,
    mutate,
    mutate_bytes,
    onnx_original,
    random_network,
    symlinked_import,
)

FAST_SPECS = [p for p in SPECS if p.stat().st_size < 4000]
BOUNDED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.skipif(not FAST_SPECS, reason="specs/ is empty")
@BOUNDED
@given(index=st.integers(min_value=0), seed=st.integers(min_value=0), rounds=st.integers(1, 3))
def test_mutated_specs_fail_cleanly(tmp_path: Path, index: int, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    data = FAST_SPECS[index % len(FAST_SPECS)].read_bytes()
    for _ in range(rounds):
        data = mutate(data, rng)
    check_bytes(data, tmp_path)


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_file_survives_seeded_mutations(tmp_path: Path, spec: Path) -> None:
    """Every file in specs/, the big ones too (the hypothesis run above samples small ones)."""
    source = spec.read_bytes()
    for seed in range(8):
        rng = random.Random(seed)
        data = source
        for _ in range(1 + seed % 3):
            data = mutate(data, rng)
        check_bytes(data, tmp_path)


@BOUNDED
@given(seed=st.integers(min_value=0))
def test_random_well_formed_networks_fail_cleanly(tmp_path: Path, seed: int) -> None:
    check_bytes(random_network(random.Random(seed)).encode(), tmp_path)


@BOUNDED
@given(text=st.text(alphabet="network{}()[]=,:->*+#\n xyz0123456789.\"'", max_size=80))
def test_arbitrary_text_fails_cleanly(tmp_path: Path, text: str) -> None:
    check_bytes(text.encode(), tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "network N { input x: [4]\n dense(" + "(" * 3000 + "1" + ")" * 3000 + ") }",
        "const A = " + "-" * 5000 + "1\nnetwork N { input x: [A]\n relu }",
        "network N { input x: [4]\n relu * 150000 }",
        "block B() { relu * 1000 }\nnetwork N { input x: [4]\n B() * 1000 }",
        "network N { input x: [99999999999, 99999999999]\n flatten dense(99999999) }",
    ],
)
def test_pathological_inputs_are_refused_in_bounded_time(tmp_path: Path, text: str) -> None:
    check_bytes(text.encode(), tmp_path)


@functools.cache
def _compiled_ir() -> bytes:
    from netspec import api

    small = next(p for p in FAST_SPECS if "lenet" in p.name)
    return api.compile_json(api.check(api.load(small))).encode()


@pytest.mark.skipif(not FAST_SPECS, reason="specs/ is empty")
@BOUNDED
@given(seed=st.integers(min_value=0), rounds=st.integers(1, 3))
def test_mutated_ir_json_fails_cleanly(tmp_path: Path, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    data = _compiled_ir()
    for _ in range(rounds):
        data = mutate(data, rng)
    check_json_bytes(data, tmp_path)


@BOUNDED
@given(
    suffix=st.sampled_from([".npz", ".npy", ".idx", ".csv"]),
    seed=st.integers(min_value=0),
    rounds=st.integers(1, 3),
)
def test_mutated_data_and_weight_files_fail_cleanly(
    tmp_path: Path, suffix: str, seed: int, rounds: int
) -> None:
    rng = random.Random(seed)
    data = binary_originals()[suffix]
    for _ in range(rounds):
        data = mutate_bytes(data, rng)
    check_binary_bytes(data, suffix, tmp_path)


def test_the_long_mode_counts_its_inputs_and_finds_no_failure(tmp_path: Path) -> None:
    tried, failures = fuzz_long.run(seconds=2, seed=0, per_input=30, out=tmp_path)
    assert sum(tried.values()) > 0 and set(tried) <= set(fuzz_long.GENERATORS)
    assert failures == []


@BOUNDED
@given(seed=st.integers(min_value=0))
def test_the_attackers_specs_fail_cleanly(tmp_path: Path, seed: int) -> None:
    """Bad string escapes, CRLF around syntax errors, repetitions past the layer limit."""
    check_bytes(attack_spec(random.Random(seed)), tmp_path)


@pytest.mark.parametrize(
    ("generate", "check"),
    [
        (hostile_ir, check_hostile_ir),
        (symlinked_import, check_symlinked_import),
        (device_output, check_device_output),
    ],
    ids=["ir-spans-naming-files", "symlinked-imports", "device-node-outputs"],
)
def test_the_attackers_files_are_refused_or_confined(
    tmp_path: Path,
    generate: Callable[[random.Random], bytes],
    check: Callable[[bytes, Path], None],
) -> None:
    for seed in range(40):
        check(generate(random.Random(seed)), tmp_path)


@BOUNDED
@given(seed=st.integers(min_value=0), rounds=st.integers(1, 3))
def test_corrupted_onnx_models_import_or_fail_cleanly(
    tmp_path: Path, seed: int, rounds: int
) -> None:
    rng = random.Random(seed)
    data = onnx_original()
    for _ in range(rounds):
        data = mutate_bytes(data, rng)
    check_onnx_bytes(data, tmp_path)
