"""Issue 17's fine-tuning criterion, end to end as a user does it: a CNN trained on the digits
with torch and exported by `torch.onnx.export`, `netspec import`ed, given a recipe that freezes
its convolutions and batch norm, and trained for one epoch from the imported weights on each
engine: the frozen arrays (running statistics included) are bit-identical afterwards, the head
has changed, and the run's weights score with `eval`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netspec import api
from netspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "data" / "digits.npz"


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """The torch model trained for a few steps, exported, imported: (spec, weights, the names
    of its conv and batchnorm layers); the spec has a recipe freezing them."""
    folder = tmp_path_factory.mktemp("finetune")
    torch.manual_seed(0)
    data = np.load(DIGITS)
    x = torch.tensor(data["x"]).reshape(-1, 1, 8, 8)
    y = torch.tensor(data["y"])
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    onnx_path = folder / "digits_cnn.onnx"
    # Without constant folding the exporter keeps the batch norm (with it, it is folded into
    # the conv): the frozen running statistics are then part of what is checked.
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(onnx_path),
        input_names=["image"],
        output_names=["logits"],
        dynamo=False,
        do_constant_folding=False,
    )
    spec, weights = folder / "digits_cnn.net", folder / "digits_cnn.npz"
    assert main(["import", str(onnx_path), "-o", str(spec), "--weights-out", str(weights)]) == 0
    analysis = api.check(api.load(spec))
    frozen = [n for n in analysis.order if analysis.layers[n].op in ("conv2d", "batchnorm")]
    assert len(frozen) == 3
    names = ", ".join(f'"{n}"' for n in frozen)
    recipe = (
        f"\ntrain {analysis.network.name} {{\n"
        f'  data = "{DIGITS}"\n'
        "  loss = cross_entropy\n"
        "  optimizer = adam(lr=0.01)\n"
        "  epochs = 1\n"
        "  batch = 64\n"
        "  validation = 0.2\n"
        "  metrics = [accuracy]\n"
        f"  freeze = [{names}]\n"
        "}\n"
    )
    spec.write_text(spec.read_text(encoding="utf-8") + recipe, encoding="utf-8")
    return spec, weights, frozen


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_an_imported_cnn_fine_tunes_its_head_with_its_convs_frozen(
    imported: tuple[Path, Path, list[str]], tmp_path: Path, engine: str
) -> None:
    spec, weights, frozen = imported
    out = tmp_path / "run"
    args = ["train", str(spec), "--init-weights", str(weights), "--out", str(out)]
    assert main([*args, "--engine", engine, "--device", "cpu"]) == 0
    start, end = np.load(weights), np.load(out / "weights.npz")
    assert sorted(start) == sorted(end)
    kept = [k for k in start if k.rpartition(".")[0] in frozen]
    assert any("running_mean" in k for k in kept) and len(kept) == 8
    for k in kept:  # bit for bit: no step, no decay, no running-statistics update
        assert start[k].tobytes() == end[k].tobytes(), k
    head = [k for k in start if k not in kept]
    assert head and all(not np.array_equal(start[k], end[k]) for k in head)
    assert main(["eval", str(spec), "--weights", str(out)]) == 0
