"""Resuming a run: what a checkpoint must agree with before its state is loaded.

A resume continues bit for bit only with the run's own seed (its validation split), held-out
fraction and optimizer; each is checked against the checkpoint's run record first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.runs import Checkpoint, RunRecord


def resumed_seed(run: RunRecord, seed: int | None, path: Path) -> int:
    """The seed a resumed run continues with: its own, recorded in the checkpoint (an older
    checkpoint has no record: the caller's seed or the recipe's then, as before)."""
    if seed is not None and seed != run.seed:
        raise NetspecError.at(
            f"the run in {path} was seeded with {run.seed}, not {seed}: another seed would "
            "split off another validation set and train on samples it validated on",
            hint=f"resume without --seed (or with --seed {run.seed}), or start a fresh run "
            "with --out",
            exit_code=EXIT_RUNTIME,
        )
    return run.seed


def check_resumed_split(recorded: RunRecord | None, run: RunRecord, path: Path) -> None:
    """Refuse a resume whose held-out fraction changed: the split holds out the end of one
    seeded permutation, so another fraction would validate on samples the run trained on."""
    held_out = run.validation
    if recorded is None or recorded.validation == held_out:
        return
    was = f"validation = {recorded.validation:g}" if recorded.validation else "val_data"
    now = f"validation = {held_out:g}" if held_out else "val_data"
    raise NetspecError.at(
        f"the run in {path} held out its validation data with {was}; the recipe now says "
        f"{now}, which would validate on samples the run trained on",
        hint=f"resume with {was} in the recipe, or start a fresh run with --out",
        exit_code=EXIT_RUNTIME,
    )


def check_resumed_freeze(recorded: RunRecord | None, run: RunRecord, path: Path) -> None:
    """Refuse a resume whose recipe freezes other layers: the checkpoint's optimizer holds no
    state for the layers it froze, and its epochs trained the others alone."""
    was = () if recorded is None else recorded.freeze
    if set(was) == set(run.freeze):
        return
    shown = {
        k: f"freeze = [{', '.join(map(repr, v))}]" if v else "no freeze"
        for k, v in (("was", was), ("now", run.freeze))
    }
    raise NetspecError.at(
        f"the run in {path} was trained with {shown['was']}; the recipe now says {shown['now']}",
        hint=f"resume with the recipe's freeze as it was, or start a new run from its weights: "
        f"--init-weights {path.parent / 'weights.npz'} --out NEW_FOLDER",
        exit_code=EXIT_RUNTIME,
    )


def check_resumed_optimizer(
    state: Checkpoint,
    run: RunRecord | None,
    name: str,
    slots: Sequence[str],
    path: Path,
) -> None:
    """Refuse to load another optimizer's state: the names of the per-parameter arrays overlap
    (Adam's and momentum's `v`, AdaGrad's and RMSProp's `r`), so it would load without error
    and be applied as something else. Checkpoints without the record are told by those names."""
    hint = "resume with the same optimizer or start a fresh run with --out"
    if run is not None and run.optimizer is not None:
        if run.optimizer != name:
            raise NetspecError.at(
                f"the checkpoint in {path} was written by {run.optimizer}; the recipe now uses "
                f"{name}",
                hint=f"{hint} (optimizer = {run.optimizer}(...) continues this run)",
                exit_code=EXIT_RUNTIME,
            )
        return
    saved = {key.partition(".")[0] for key in state.optimizer if "." in key}
    # Equal sets, not a subset: momentum's {v} fits inside Adam's {m, v}, and loading it
    # would hand Adam a velocity as its second moment.
    if saved and saved != set(slots):
        keeps = f"which keeps {', '.join(slots)}" if slots else "which keeps no state"
        raise NetspecError.at(
            f"the checkpoint in {path} holds optimizer state {', '.join(sorted(saved))}, "
            f"written by another optimizer; the recipe now uses {name}, {keeps}",
            hint=hint,
            exit_code=EXIT_RUNTIME,
        )
