"""The run folder: what a training run writes and every command reads back.

Both training engines write it and `eval`, `export`, `predict`, `plot` and `--resume` read it,
so its format lives here, beside neither. Everything is plain arrays (arrays.py), written
atomically.

``weights.npz`` is the flat dict ``node.local -> array`` (trainable and state arrays together).
``checkpoint.npz`` adds what an exact resume needs, under prefixed keys:

- ``params/<name>``: the weights after the last completed epoch;
- ``optimizer/<key>``: the optimizer's state_dict (moments, step counter);
- ``best/<name>``: early stopping's best weights, when it keeps them;
- ``meta``: JSON text as a uint8 array (epoch, step, the numpy bit-generator state, early-stopping
  counters, the history so far, and ``run``: what the run was made with that the recipe may not
  say, such as a ``--seed`` override): JSON rather than a pickled object, so loading runs no code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from netspec.arrays import encode_json, load_arrays, read_npz, save_arrays
from netspec.errors import EXIT_RUNTIME, NetspecError
from netspec.files import atomic_write, atomic_write_text
from netspec.meta_checks import check_optimizer, parse_meta
from netspec.ops.base import Array

if TYPE_CHECKING:
    from netspec.ir import Analysis
    from netspec.recipe import TrainSpec

WEIGHTS = "weights.npz"
CHECKPOINT = "checkpoint.npz"
HISTORY = "history.json"
NORMALIZATION = "normalization.npz"
# Every file name a run folder may hold (curves.png is the picture's; see viz.curves).
RUN_FILES = (WEIGHTS, CHECKPOINT, HISTORY, NORMALIZATION, "curves.png")


def load_weights(path: Path) -> dict[str, Array]:
    """The arrays of a weights file; a training checkpoint given instead is named as such
    (its arrays are prefixed params/, optimizer/, so it would read as weights for no network)."""
    params = load_arrays(path)
    if "meta" in params and any(k.startswith("params/") for k in params):
        raise NetspecError.at(
            f"{path} is a training checkpoint, not a weights file",
            hint=f"pass the {WEIGHTS} beside it, or the run folder {path.parent}",
            exit_code=EXIT_RUNTIME,
        )
    return params


def without_torch_counters(weights: dict[str, Array]) -> tuple[dict[str, Array], list[str]]:
    """The weights without PyTorch batchnorm's `num_batches_tracked` step counters (a state
    dict saved as .npz has one beside each `running_mean`; netspec's batchnorm uses a fixed
    momentum and keeps none), and the names of those dropped, for a note."""
    dropped = sorted(
        k
        for k in weights
        if k.endswith(".num_batches_tracked")
        and f"{k.removesuffix('.num_batches_tracked')}.running_mean" in weights
    )
    return {k: v for k, v in weights.items() if k not in dropped}, dropped


@dataclass(frozen=True)
class Trained:
    """Weights saved by a run, with the input statistics its recipe normalised by (if any)."""

    params: dict[str, Array]
    normalization: tuple[Array, Array] | None
    classes: tuple[str, ...] | None = None  # the names its run mapped text labels from
    ignored: list[str] = field(default_factory=list)  # PyTorch's num_batches_tracked, dropped


def load_trained(path: Path, mode: str, input_dtype: str) -> Trained:
    """The weights file `path` with what its run folder says of it (see load_normalization)."""
    params, ignored = without_torch_counters(load_weights(path))
    stats = load_normalization(path.parent, mode, input_dtype)
    return Trained(params, stats, recorded_classes(path.parent), ignored)


def load_normalization(folder: Path, mode: str, input_dtype: str) -> tuple[Array, Array] | None:
    """The (shift, scale) a run saved beside its weights, when its recipe normalises (`mode`)
    float inputs; None otherwise (training fits no statistics for token ids), so a file left
    by another recipe's run is never applied. Read by eval, predict and export alike."""
    if mode == "none" or input_dtype != "float32":
        return None
    path = folder / NORMALIZATION
    if not path.is_file():
        raise NetspecError.at(
            f"the recipe normalises its data ({mode}) but {path} is missing",
            hint="keep normalization.npz beside weights.npz: it holds the training statistics",
            exit_code=EXIT_RUNTIME,
        )
    stats = load_arrays(path, "normalization file")
    if "shift" not in stats or "scale" not in stats:
        raise NetspecError.at(
            f"{path} holds {sorted(stats)}, not the arrays 'shift' and 'scale'",
            hint="train again to rewrite it: it holds the training statistics",
            exit_code=EXIT_RUNTIME,
        )
    return stats["shift"], stats["scale"]


def resume_checkpoint(path: Path, example: Path | None = None) -> Path:
    """The checkpoint a resume means: PATH/checkpoint.npz for a run folder, or PATH itself
    when it names a file (the run then continues in that file's folder). `example` is a run
    folder for the hint."""
    hint = f"--resume takes the folder of an earlier run (the one holding {CHECKPOINT})" + (
        f", e.g. --resume {example}" if example is not None else ""
    )
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise NetspecError.at(
                f"{path} holds no {CHECKPOINT} to resume from", hint=hint, exit_code=EXIT_RUNTIME
            )
        return path / CHECKPOINT
    if path.is_file():
        return path
    raise NetspecError.at(
        f"no run to resume at {path}: it does not exist", hint=hint, exit_code=EXIT_RUNTIME
    )


def weights_file(path: str | Path) -> Path:
    """`--weights` may name the weights file or the run folder that holds it."""
    p = Path(path)
    return p / WEIGHTS if p.is_dir() else p


def check_weights(
    weights: Mapping[str, Array], expected: Mapping[str, tuple[int, ...]], source: str
) -> None:
    """Every expected array present with its shape; extra arrays are an error too."""
    for name, shape in expected.items():
        if name not in weights:
            raise NetspecError.at(
                f"the network needs tensor '{name}' (shape {list(shape)}), missing in {source}",
                hint="were these weights trained for another network or version of the spec?",
                exit_code=EXIT_RUNTIME,
            )
        if weights[name].dtype.kind != "f":
            raise NetspecError.at(
                f"{source}: tensor '{name}' has dtype {weights[name].dtype}; weights are floats",
                exit_code=EXIT_RUNTIME,
            )
        got = tuple(weights[name].shape)
        if got != tuple(shape):
            raise NetspecError.at(
                f"{source}: tensor '{name}' has shape {list(got)} but the network expects "
                f"{list(shape)}",
                hint="were these weights trained for another network or version of the spec?",
                exit_code=EXIT_RUNTIME,
            )
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise NetspecError.at(
            f"{source}: tensors the network does not have: {', '.join(extra[:5])}"
            + (f" and {len(extra) - 5} more" if len(extra) > 5 else ""),
            exit_code=EXIT_RUNTIME,
        )


@dataclass
class Checkpoint:
    """The training state after a completed epoch."""

    params: dict[str, Array]
    optimizer: dict[str, Array]
    meta: dict[str, Any]
    best: dict[str, Array] | None = field(default=None)


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    arrays: dict[str, Array] = {"meta": encode_json(ckpt.meta)}
    arrays.update({f"params/{k}": v for k, v in ckpt.params.items()})
    arrays.update({f"optimizer/{k}": v for k, v in ckpt.optimizer.items()})
    if ckpt.best is not None:
        arrays.update({f"best/{k}": v for k, v in ckpt.best.items()})

    def write(f: IO[bytes]) -> None:
        # Uncompressed: checkpoints are rewritten every epoch and read back rarely.
        np.savez(f, **arrays)  # type: ignore[arg-type]

    atomic_write(path, write)


def checkpoint_file(path: Path) -> Path:
    """`path`, or `path/checkpoint.npz` when it is a run folder."""
    return path / CHECKPOINT if path.is_dir() else path


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Remove the temporaries a run killed mid-write left (`.checkpoint.npz.*.tmp`, named so
    by files.atomic_write): nothing else ever removes them. Only a run's own file names."""
    removed = []
    for name in RUN_FILES:
        for tmp in out_dir.glob(f".{name}.*.tmp"):
            if tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def load_checkpoint(path: Path) -> Checkpoint:
    """Read `path`, or `path/checkpoint.npz` when given a run folder."""
    path = checkpoint_file(path)
    arrays = load_arrays(path, "checkpoint")
    if "meta" not in arrays:
        raise NetspecError.at(f"{path} is not a netspec checkpoint", exit_code=EXIT_RUNTIME)
    groups: dict[str, dict[str, Array]] = {"params": {}, "optimizer": {}, "best": {}}
    for key, value in arrays.items():
        prefix, _, name = key.partition("/")
        if prefix in groups:
            groups[prefix][name] = value
    check_optimizer(groups["optimizer"], groups["params"], path)
    return Checkpoint(
        params=groups["params"],
        optimizer=groups["optimizer"],
        meta=parse_meta(arrays["meta"], path),
        best=groups["best"] or None,
    )


def load_meta(path: Path) -> dict[str, Any]:
    """Only the JSON record of checkpoint `path`: its arrays' headers are checked, but no
    weights or optimizer moments are read."""
    arrays = read_npz(path, "checkpoint", ("meta",))
    if "meta" not in arrays:
        raise NetspecError.at(f"{path} is not a netspec checkpoint", exit_code=EXIT_RUNTIME)
    return parse_meta(arrays["meta"], path)


def expected_shapes(analysis: Analysis) -> dict[str, tuple[int, ...]]:
    """Every trainable and state array of the network by global name, with its shape."""
    out: dict[str, tuple[int, ...]] = {}
    for name, info in analysis.layers.items():
        for local, shape in (*info.param_shapes.items(), *info.state_shapes.items()):
            out[f"{name}.{local}"] = tuple(shape)
    return out


@dataclass(frozen=True)
class RunRecord:
    """What a run was made with that its recipe may not say (a `--seed` override), kept in
    each checkpoint's meta under "run": eval rebuilds the run's validation split from it, and
    resume refuses an optimizer whose state would be misread (Adam's `v` is not momentum's)."""

    seed: int
    validation: float  # the fraction split off the training data; 0 with val_data
    optimizer: str | None = None  # the recipe's optimizer name; None in older checkpoints
    # The class names text labels were mapped from, index by index (eval and predict map and
    # name classes by them); None when the labels were numbers.
    classes: tuple[str, ...] | None = None
    freeze: tuple[str, ...] = ()  # the recipe's frozen layers: a resume keeps them

    @classmethod
    def of(cls, spec: TrainSpec, optimizer: str) -> RunRecord:
        """The record of a run made by `spec` (its overrides applied)."""
        held_out = 0.0 if spec.val_data is not None else spec.validation
        return cls(spec.seed, held_out, optimizer, freeze=spec.freeze)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seed": self.seed,
            "validation": self.validation,
            "optimizer": self.optimizer,
        }
        if self.classes is not None:
            out["classes"] = list(self.classes)
        if self.freeze:
            out["freeze"] = list(self.freeze)
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> RunRecord | None:
        """The record of a checkpoint's meta; None for checkpoints written before it existed."""
        run = meta.get("run")
        if run is None:
            return None
        seed, fraction, optimizer, classes = (
            (run.get("seed"), run.get("validation"), run.get("optimizer"), run.get("classes"))
            if isinstance(run, dict)
            else (None, None, None, None)
        )
        freeze = run.get("freeze", []) if isinstance(run, dict) else []
        if not (
            isinstance(seed, int)
            and not isinstance(seed, bool)
            and seed >= 0
            and isinstance(fraction, float | int)
            and 0 <= fraction < 1
            and (optimizer is None or isinstance(optimizer, str))
            and (
                classes is None
                or (
                    isinstance(classes, list)
                    and all(isinstance(c, str) for c in classes)
                    and len(set(classes)) == len(classes)
                )
            )
            and isinstance(freeze, list)
            and all(isinstance(n, str) for n in freeze)
        ):
            raise NetspecError.at(
                f"{path} is not a netspec checkpoint: its run record {json.dumps(run)[:80]} "
                "lacks a valid seed, validation fraction, optimizer name, class or freeze list",
                exit_code=EXIT_RUNTIME,
            )
        names = None if classes is None else tuple(classes)
        return cls(seed, float(fraction), optimizer, names, tuple(freeze))


def recorded_classes(folder: Path) -> tuple[str, ...] | None:
    """The class names the run in `folder` mapped text labels from (its checkpoint's record);
    None where it has none, or no checkpoint."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    record = RunRecord.from_meta(load_meta(path), path)
    return None if record is None else record.classes


def save_normalization(out_dir: Path, stats: tuple[Array, Array] | None) -> None:
    """Make normalization.npz describe the weights.npz written next: predict and export apply
    the statistics beside the weights, so a run that does not normalise removes a file left by
    an earlier run into the same folder (that file only; a folder of that name is not ours).

    Called just before the weights are written, so that a run that fails midway leaves the
    previous weights with their own statistics.
    """
    path = out_dir / NORMALIZATION
    if stats is not None:
        stats_arrays = {"shift": np.asarray(stats[0]), "scale": np.asarray(stats[1])}
        save_arrays(path, stats_arrays, durable=False)  # resuming the checkpoint remakes it
    elif path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)  # one atomic unlink; a link goes, never its target


def history_json(history: list[dict[str, Any]]) -> str:
    """history.json: one epoch's record a line (json's C encoder: the indented one is pure
    Python, 10 ms for 300 epochs); a value that is not finite (a validation loss that
    overflowed) is null, as JSON has no NaN, and readers already take null for "not measured"
    (val_loss without validation data)."""
    clean = [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
        for r in history
    ]
    if not clean:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, allow_nan=False) for r in clean) + "\n]\n"


def write_history(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """Not fsynced: checkpoint.npz, which is, holds the same history for a power cut."""
    atomic_write_text(out_dir / HISTORY, history_json(history), durable=False)


def run_folder(
    network: str, out_dir: str | Path | None, resume: str | Path | None
) -> tuple[Path, Path | None]:
    """The folder a run writes (`out_dir`, else the resumed run's, else runs/<network>/) and
    the checkpoint `resume` names (a run folder or its checkpoint.npz), found before anything
    is created."""
    default = Path("runs") / network
    checkpoint = None if resume is None else resume_checkpoint(Path(resume), default)
    if out_dir is not None:
        return Path(out_dir), checkpoint
    return (checkpoint.parent if checkpoint is not None else default), checkpoint
