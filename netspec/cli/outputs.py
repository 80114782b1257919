"""Outputs that would replace inputs: every `-o` (and every default output) is checked against
all the files a command reads before any work is done."""

from __future__ import annotations

import argparse
from pathlib import Path

from netspec import runs
from netspec.errors import EXIT_USAGE, NetspecError
from netspec.files import check_output as refuse


def check_output(args: argparse.Namespace, output: Path, example: str) -> None:
    """Refuse an output path that is a folder or one of the command's inputs: a file its
    arguments name, the files in a run folder it reads, and every file a spec it loads was read
    from (imports that only give constants too). `example` names a file of the output's format
    for the hint."""
    refuse(output, input_paths(args), example)
    refuse_run_file(output)


def refuse_run_file(output: Path) -> None:
    """A run's own files are never an output: `export -o run/checkpoint.npz` would leave a run
    that `--resume` and `eval` cannot read. (curves.png is a picture `plot` redraws.)"""
    kept = [name for name in runs.RUN_FILES if name != "curves.png"]
    folder = output.parent
    if output.name in kept and any((folder / name).is_file() for name in kept):
        raise NetspecError.at(
            f"the output {output} is a file of the training run in {folder}",
            hint="choose another output file; a run's weights, checkpoint and history are "
            "written by train only",
            exit_code=EXIT_USAGE,
        )


def input_paths(args: argparse.Namespace) -> list[Path]:
    """Every file a command's arguments name for reading (a run folder: the files in it)."""
    from netspec import api

    paths = [
        Path(value)
        for key in ("file", "model", "data", "resume", "init_weights")
        if isinstance(value := getattr(args, key, None), str)
    ]
    outside = getattr(args, "allow_outside_imports", False)
    for key in ("file", "model"):  # a spec's imports
        spec = getattr(args, key, None)
        if isinstance(spec, str) and spec.endswith(".net") and Path(spec).is_file():
            paths += api.source_files(spec, allow_outside_imports=outside)
    for spec in getattr(args, "input", None) or []:  # predict's [NAME=]FILE
        paths += [Path(spec), Path(spec.partition("=")[2])] if "=" in spec else [Path(spec)]
    if isinstance(weights := getattr(args, "weights", None), str):
        folder = Path(weights) if Path(weights).is_dir() else Path(weights).parent
        paths += [Path(weights), folder / runs.WEIGHTS, folder / runs.NORMALIZATION]
    for run in getattr(args, "runs", None) or []:  # plot reads a run's history
        paths += [Path(run), Path(run) / runs.HISTORY]
    return paths
