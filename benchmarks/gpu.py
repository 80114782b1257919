"""The torch engine on a CUDA GPU: ready to run on a machine with one (none was lent so far).

    .venv/bin/python benchmarks/gpu.py [--quick] [--json gpu.json] [--only digits,resnet20]

1. Training steps on synthetic data, fp32 and bf16: netspec's torch engine (TorchTrainer.loss +
   update, the features held on the GPU) against a hand-written PyTorch loop of the same net
   (torch_engine.py: twin.Twin, F.cross_entropy, torch.optim.SGD momentum), interleaved A/B
   (run.py's `interleaved`), CUDA-synchronised; images/s and the ratio (target <= 1.05).
   Networks: the digits CNN (examples/digits_cnn.net), the CIFAR CNN (specs/cifar10_cnn.net),
   ResNet-20 (specs/resnet20.net) and ResNet-50 (specs/resnet50.net, 224x224).
2. With more than one GPU: `netspec train --nproc K` (K = 1, 2, 4, ... up to the GPUs) of
   ResNet-20 on a synthetic CIFAR-sized set, images/s from history.json's epoch times.
3. `netspec export` of that run's weights and `netspec predict --provider cuda` on it: the
   provider onnxruntime really used is printed (`provider: ...`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from run import interleaved  # noqa: E402
from torch_engine import engine_step, reference_step, synced  # noqa: E402

from netspec import api  # noqa: E402

NETS = (  # name, spec, batch
    ("digits_cnn", "examples/digits_cnn.net", 512),
    ("cifar10_cnn", "specs/cifar10_cnn.net", 256),
    ("resnet20", "specs/resnet20.net", 256),
    ("resnet50", "specs/resnet50.net", 64),
)
RESNET20_TRAIN = """
train ResNet20 {{
  data = npz("{data}")
  loss = cross_entropy
  optimizer = momentum(lr=0.05)
  batch = {batch}
  epochs = 2
  seed = 0
}}
"""


def steps(args: argparse.Namespace) -> list[dict[str, Any]]:
    reps, budget = (5, 0.3) if args.quick else (9, 1.0)
    only = set(args.only.split(",")) if args.only else None
    records = []
    for name, path, batch in NETS:
        if only is not None and not any(name.startswith(o) for o in only):
            continue
        analysis = api.check(api.load(ROOT / path))
        for precision in ("fp32", "bf16"):
            rec: dict[str, Any] = {"workload": name, "batch": batch, "precision": precision}
            try:
                ours = synced(engine_step(analysis, batch, "cuda", precision), "cuda")
                theirs = synced(reference_step(analysis, batch, "cuda", precision), "cuda")
                rec.update(interleaved(ours, theirs, reps, budget))
                rec["netspec_images_s"] = batch / rec["netspec_ms"] * 1e3
                rec["reference_images_s"] = batch / rec["reference_ms"] * 1e3
                rec["met"] = rec["ratio"] <= 1.05
                print(
                    f"{name:<12} b{batch:<4} {precision}: netspec {rec['netspec_images_s']:9.0f}"
                    f" img/s, PyTorch {rec['reference_images_s']:9.0f} img/s, ratio "
                    f"{rec['ratio']:.3f} [{rec['ratio_min']:.2f}..{rec['ratio_max']:.2f}]",
                    flush=True,
                )
            except Exception as e:  # one workload's failure must not hide the others' figures
                rec["error"] = f"{type(e).__name__}: {e}"
                print(f"{name:<12} b{batch:<4} {precision}: FAILED {rec['error']}", flush=True)
            records.append(rec)
            torch.cuda.empty_cache()
    return records


def _netspec(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "netspec", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)


def scaling(work: Path, quick: bool) -> list[dict[str, Any]]:
    """`netspec train --nproc K` images/s on ResNet-20, K = 1, 2, 4, ... GPUs."""
    gpus = torch.cuda.device_count()
    n, batch = (4096 if quick else 16384), 512
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    np.savez(work / "cifar_synth.npz", x=x, y=rng.integers(0, 10, size=n))
    text = (ROOT / "specs" / "resnet20.net").read_text(encoding="utf-8")
    spec = work / "resnet20_train.net"
    spec.write_text(text + RESNET20_TRAIN.format(data=work / "cifar_synth.npz", batch=batch))
    records = []
    k = 1
    while k <= gpus:
        out = work / f"run{k}"
        t0 = time.perf_counter()
        done = _netspec("train", str(spec), "--engine", "torch", "--device", "cuda",
                        "--nproc", str(k), "--out", str(out))  # fmt: skip
        wall = time.perf_counter() - t0
        rec: dict[str, Any] = {"workload": "resnet20 --nproc", "nproc": k, "wall_s": wall}
        if done.returncode != 0:
            rec["error"] = done.stderr.strip().splitlines()[-1:]
            print(f"--nproc {k}: FAILED {rec['error']}", flush=True)
        else:
            history = json.loads((out / "history.json").read_text(encoding="utf-8"))
            last = history[-1]  # the second epoch: no start-up in it
            rec["images_s"] = n / last["seconds"]
            rec["device"] = last["device"]
            print(f"--nproc {k}: {rec['images_s']:9.0f} img/s ({last['device']})", flush=True)
        records.append(rec)
        k *= 2
    if gpus < 2:
        print(f"--nproc scaling: {gpus} GPU here, nothing to scale across", flush=True)
    return records


def predict_on_cuda(work: Path) -> dict[str, Any]:
    """Export the --nproc 1 run's weights and predict with onnxruntime's CUDA provider."""
    spec, run = work / "resnet20_train.net", work / "run1"
    onnx = work / "resnet20.onnx"
    x = np.random.default_rng(1).standard_normal((256, 3, 32, 32)).astype(np.float32)
    np.save(work / "inputs.npy", x)
    exported = _netspec("export", str(spec), "--weights", str(run), "-o", str(onnx))
    if exported.returncode != 0:
        print(f"export: FAILED {exported.stderr.strip()}", flush=True)
        return {"workload": "predict --provider cuda", "error": exported.stderr.strip()}
    done = _netspec("predict", str(onnx), "--input", str(work / "inputs.npy"), "--provider", "cuda",
                    "-o", str(work / "outputs.npz"))  # fmt: skip
    said = (done.stdout + done.stderr).strip()
    print(f"predict --provider cuda (exit {done.returncode}):\n{said}", flush=True)
    line = [ln for ln in said.splitlines() if ln.startswith("provider:")]
    return {"workload": "predict --provider cuda", "rc": done.returncode, "provider": line}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter samples and data")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--only", help="comma-separated network prefixes for the step table")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU and a CUDA build of PyTorch")
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    print(f"GPUs: {names}; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    torch.backends.cudnn.benchmark = True  # both sides: the same convolution algorithms
    records = steps(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        records += scaling(work, args.quick)
        records.append(predict_on_cuda(work))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
