"""Nothing lost: `netspec train` killed with SIGKILL at random moments, some of them in the
middle of a checkpoint write, always leaves a checkpoint that loads, and `--resume` continues.

The child is the real CLI, started through a few lines that (a) write a checkpoint every epoch
instead of at most once a second, and (b) announce on stdout when a checkpoint write starts
("S") and when its temporary file is complete but not yet renamed ("W"), pausing there briefly.
The parent kills at those moments or after a random delay. Nothing in netspec is changed.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from netspec.arrays import load_arrays
from netspec.runs import load_checkpoint

SPEC = """
network Tiny {
  input x: [4]
  dense(16) tanh
  dense(3)
}
train Tiny {
  data = "d.npz"
  loss = cross_entropy
  optimizer = adam(lr=0.01)
  epochs = 5000
  batch = 8
  validation = 0.25
  metrics = [accuracy]
}
"""

CHILD = """
import os, sys, time
import netspec.runs as ckpt
import netspec.training.loop as train
from netspec.cli import main

train.CHECKPOINT_INTERVAL_S = 0.0
real_write, real_replace = ckpt.atomic_write, os.replace

def announce(tag):
    sys.stdout.write(tag + "\\n")
    sys.stdout.flush()

def atomic_write(path, write):
    announce("S")
    real_write(path, write)

def replace(src, dst):
    if str(dst).endswith("checkpoint.npz"):
        announce("W")  # the temporary file is complete; the final name is still the old one
        time.sleep(0.05)
    real_replace(src, dst)

ckpt.atomic_write = atomic_write
os.replace = replace
sys.exit(main(sys.argv[1:]))
"""

KILLS = 24


def _start(project: Path, resume: bool) -> subprocess.Popen[str]:
    where = ["--resume", "run"] if resume else ["--out", "run"]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, "train", "tiny.net", *where],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen[str], tag: str, timeout: float) -> bool:
    """Read the child's stdout until `tag` appears; False if it did not within `timeout`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            return False
        line = proc.stdout.readline()
        if not line:  # the child exited
            return False
        if line.strip() == tag:
            return True
    return False


def _assert_run_folder_intact(run: Path) -> int:
    """Every file under a final name is complete; returns the checkpoint's epoch (0: none)."""
    for path in run.iterdir():
        if path.name.endswith(".tmp"):
            assert path.name.startswith("."), path  # temporaries never take a final name
        elif path.suffix == ".npz":
            load_arrays(path)  # raises on a partial archive
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    if not (run / "checkpoint.npz").exists():
        return 0
    return int(load_checkpoint(run).meta["epoch"])


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_at_random_moments_never_loses_the_checkpoint_and_resume_continues(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(x[:, :3], axis=1))
    (tmp_path / "tiny.net").write_text(SPEC, encoding="utf-8")
    run = tmp_path / "run"
    pick = random.Random(1)
    epochs_seen = [0]
    during_write = 0
    for i in range(KILLS):
        proc = _start(tmp_path, resume=epochs_seen[-1] > 0)
        mode = ("before rename", "mid-write", "random")[i % 3]
        if mode == "before rename":
            hit = _wait_for(proc, "W", timeout=30)
        elif mode == "mid-write":
            hit = _wait_for(proc, "S", timeout=30)
            time.sleep(pick.uniform(0, 0.01))
        else:
            # From the first checkpoint write on, not from the start: under load the child's
            # imports alone can outlast any fixed delay, and then no kill would find a checkpoint.
            hit = _wait_for(proc, "S", timeout=30)
            time.sleep(pick.uniform(0.05, 0.5))
        assert proc.poll() is None, f"the run ended before kill {i}: {proc.communicate()[1]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        during_write += hit and mode != "random"
        if run.exists():
            epoch = _assert_run_folder_intact(run)
            assert epoch >= epochs_seen[-1], "a kill lost a completed checkpoint"
            epochs_seen.append(epoch)
    assert during_write >= KILLS // 2  # the targeted kills did land inside checkpoint writes
    assert epochs_seen[-1] > 0

    # After all the kills, a resume finishes the run, and the history has every epoch once.
    last = epochs_seen[-1]
    args = ["train", "tiny.net", "--resume", "run", "--epochs", str(last + 2)]
    done = subprocess.run(
        [sys.executable, "-m", "netspec", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    assert [r["epoch"] for r in history] == list(range(1, last + 3))
    assert load_checkpoint(run).meta["epoch"] == last + 2
