"""The torch engine's entry: one process, `--nproc N` local processes, or a rank of the
external launcher (torchrun) that started this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.ir import Analysis
from netspec.recipe import TrainSpec
from netspec.torch import trainer
from netspec.torch.speed import autocast_dtype
from netspec.torch.trainer import resolve_device
from netspec.training.contracts import FitResult
from netspec.training.plan import check_world, launched


def fit(
    analysis: Analysis,
    spec: TrainSpec,
    out_dir: Path,
    *,
    device: str = "auto",
    dtype: npt.DTypeLike = np.float32,
    nproc: int = 1,
    precision: str = "fp32",
    compile: bool = False,
    sync_batchnorm: bool | None = None,
    **options: Any,
) -> FitResult:
    """training.loop.fit on the torch engine (options as there), in this process, on `nproc`
    local processes, or as a rank of the launcher's job. `sync_batchnorm`: batch norm over the
    global batch rather than each process's shard (default: on CUDA only)."""
    resolve_device(device)  # refused before the data are read
    place = launched()
    kw: dict[str, Any] = {"device": device, "dtype": dtype, "precision": precision}
    kw["compile"] = compile
    if place is None and nproc == 1:
        return trainer.fit(analysis, spec, out_dir, **kw, **options)
    from netspec.torch.distributed import Job, join

    check_world(spec, options.get("batch"), nproc)
    autocast_dtype(precision, resolve_device(device), trainer._torch_dtype(dtype))
    job = Job(analysis, spec, out_dir, kw, options, sync_batchnorm)
    if place is not None:
        return join(job, place)
    from netspec.torch.launch import launch

    return launch(job, nproc)
