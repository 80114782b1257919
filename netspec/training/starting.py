"""Starting a run from given weights (`netspec train --init-weights W`), for any engine.

The file is read with the safe .npz reader (arrays.py: headers checked, nothing unpickled) and
must fit the network exactly: every array the network has, by its global name (`conv1.weight`,
`bn1.running_mean`; what `netspec import` writes and a PyTorch state dict of the same names
holds), with its shape, and nothing else. Every mismatch is listed at once, so a file exported
under other names shows its whole pattern rather than one name per attempt. PyTorch's
`num_batches_tracked` counters are dropped, as eval and predict drop them (runs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, Diagnostic, NetspecError, Severity, suggest
from netspec.files import same_file
from netspec.ops.base import Array, Params
from netspec.runs import CHECKPOINT, WEIGHTS, load_weights, without_torch_counters

HINT = (
    "the weights must be keyed by the spec's own names (`netspec import` writes them so; "
    "`netspec check FILE --json` lists each layer)"
)


def refuse_with_resume(init_weights: object | None, resume: object | None) -> None:
    """--init-weights starts a run and --resume continues one: both at once is two starts."""
    if init_weights is not None and resume is not None:
        raise NetspecError.at(
            "--init-weights and --resume are two ways to start a run: give one",
            hint="--resume continues a run from its checkpoint (its weights included); "
            "--init-weights starts a fresh run from a weights file",
            exit_code=EXIT_USAGE,
        )


def refuse_replacing(init_weights: Path, out_dir: Path) -> None:
    """The run writes weights.npz and checkpoint.npz into `out_dir`: starting from one of them
    would replace the file the run started from."""
    for name in (WEIGHTS, CHECKPOINT):
        if same_file(out_dir / name, init_weights):
            raise NetspecError.at(
                f"--init-weights {init_weights} is the {name} this run writes into {out_dir}: "
                "training would replace the weights it started from",
                hint=f"train into another folder with --out, or copy {init_weights} first",
                exit_code=EXIT_USAGE,
            )


def mismatches(
    weights: Mapping[str, Array], expected: Mapping[str, tuple[int, ...]], source: str
) -> tuple[list[Diagnostic], list[Diagnostic], list[Diagnostic]]:
    """Every way `weights` differ from the network's arrays: (missing names, unexpected names
    with the nearest missing one as a hint, wrong dtypes or shapes with both shapes)."""
    missing = [n for n in expected if n not in weights]
    absent = [
        Diagnostic(Severity.ERROR, f"{source}: missing '{n}' (shape {list(expected[n])})")
        for n in missing
    ]
    unexpected = [
        Diagnostic(
            Severity.ERROR,
            f"{source}: unexpected '{name}' (shape {list(weights[name].shape)}): "
            "the network has no such array",
            hint=suggest(name, missing) or suggest(name, expected),
        )
        for name in sorted(set(weights) - set(expected))
    ]
    wrong = []
    for name, shape in expected.items():
        got = weights.get(name)
        if got is None:
            continue
        if got.dtype.kind != "f":
            message = f"{source}: '{name}' has dtype {got.dtype}; weights are floats"
        elif tuple(got.shape) != tuple(shape):
            message = (
                f"{source}: '{name}' has shape {list(got.shape)}; the network's is {list(shape)}"
            )
        else:
            continue
        wrong.append(Diagnostic(Severity.ERROR, message))
    return absent, unexpected, wrong


def initial_weights(
    path: Path, expected: Mapping[str, tuple[int, ...]]
) -> tuple[dict[str, Array], list[str]]:
    """The arrays of `path`, checked against `expected` (every array of the network
    by global name), and the names of the `num_batches_tracked` counters dropped (for a note).
    A file that does not fit is refused with every mismatch (exit 3, as for other weights)."""
    weights, ignored = without_torch_counters(load_weights(path))
    absent, unexpected, wrong = mismatches(weights, expected, str(path))
    if absent or unexpected or wrong:
        head = Diagnostic(
            Severity.ERROR,
            f"--init-weights {path} does not fit the network: {len(absent)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} of the wrong shape or dtype "
            f"(the network has {len(expected)} arrays)",
            hint=HINT,
        )
        raise NetspecError([head, *absent, *unexpected, *wrong], EXIT_RUNTIME)
    return weights, ignored


@dataclass(frozen=True)
class Start:
    """Weights a fresh run starts from instead of its initialiser's."""

    params: dict[str, Array]  # checked: every array of the network, by global name
    ignored: list[str]  # PyTorch's num_batches_tracked counters, dropped (for a note)

    def load_into(self, trainer: _Weighted) -> None:
        """Replace a trainer's initial weights by copies of these, in the trainer's dtypes."""
        dtypes = {k: v.dtype for k, v in trainer.params.items()}
        trainer.params = {k: np.array(v, dtype=dtypes[k]) for k, v in self.params.items()}


class _Weighted(Protocol):
    params: Params


def starting_weights(
    init_weights: str | Path | None,
    resume: str | Path | None,
    out_dir: Path,
    expected: Mapping[str, tuple[int, ...]],
) -> Start | None:
    """What a run into `out_dir` starts from: None (fresh weights, or a resume's checkpoint)
    or the checked arrays of `init_weights`."""
    refuse_with_resume(init_weights, resume)
    if init_weights is None:
        return None
    refuse_replacing(Path(init_weights), out_dir)
    return Start(*initial_weights(Path(init_weights), expected))
