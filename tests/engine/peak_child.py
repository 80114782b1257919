"""Run by test_memory_peak.py in a fresh interpreter: one train or predict run, then the
memory estimate api checked it against and how much the process grew, as JSON on stdout."""

from __future__ import annotations

import json
import sys

import numpy as np


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def main(mode: str, spec: str, out: str) -> None:
    import netspec.engine.inference  # loaded before api's check, as in a run
    import netspec.engine.trainer  # noqa: F401
    from netspec import api, memory
    from netspec.initializers import init_params
    from netspec.training.plan import require_recipe

    analysis = api.check(api.load(spec))
    if mode == "train":
        recipe = require_recipe(analysis)
        est = memory.training(analysis, recipe, None, recipe.data)
        before = _status("VmRSS:")
        api.train(analysis, out, max_memory=est.total, curves=False, threads=1)
    else:
        name = analysis.network.inputs[0].name
        x = np.random.default_rng(0).normal(size=(96, *analysis.shape(name))).astype(np.float32)
        params = init_params(analysis, np.random.default_rng(0))
        est = memory.running(analysis, 32, len(x))
        before = _status("VmRSS:")
        api.predict(analysis, {name: x}, params=params, batch_size=32, max_memory=est.total)
    grew = _status("VmHWM:") - before
    print(json.dumps({"estimate": est.total, "grew": grew}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
