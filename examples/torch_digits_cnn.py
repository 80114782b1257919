"""A model from elsewhere, for the README's import-and-fine-tune walk-through: a small PyTorch
CNN trained briefly on the bundled digits, exported with `torch.onnx.export` (needs torch).

    python examples/torch_digits_cnn.py digits_cnn.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def main(out: str = "digits_cnn.onnx", steps: int = 15) -> None:
    torch.manual_seed(0)
    with np.load(HERE / "data" / "digits.npz", allow_pickle=False) as data:
        x = torch.tensor(data["x"]).reshape(-1, 1, 8, 8)
        y = torch.tensor(data["y"])
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):  # briefly: the fine-tuning has something left to do
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    # Without constant folding the exporter keeps the batch norm as BatchNormalization (with
    # it, an eval-mode export folds it into the conv, and `netspec import` says so).
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        out,
        input_names=["image"],
        output_names=["logits"],
        dynamo=False,
        do_constant_folding=False,
    )
    print(f"trained {steps} steps (accuracy {accuracy:.3f} on all digits); wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
