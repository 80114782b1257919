"""Small torch modules, exported by torch.onnx.export, import as netspec layers and agree with
the original within 1e-4 (tests/onnx/foreign.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from netspec.errors import NetspecError
from tests.onnx.foreign import import_torch


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3])
def test_torch_s_upsample_is_upsample2d(mode: str, scale: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    module = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 1), torch.nn.Upsample(scale_factor=scale, mode=mode, **kw)
    )
    _, text = import_torch(module, torch.randn(1, 2, 4, 5), tmp_path)
    assert "upsample2d" in text
    assert (f'mode="{mode}"' in text) == (mode == "bilinear")


def test_an_upsample_with_aligned_corners_is_refused(tmp_path: Path) -> None:
    """align_corners=True samples other points than netspec's bilinear: one clear error."""
    module = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 1),
        torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
    )
    with pytest.raises(NetspecError, match="Resize x1"):
        import_torch(module, torch.randn(1, 2, 4, 5), tmp_path)
