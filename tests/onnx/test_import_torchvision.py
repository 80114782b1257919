"""Issue 17, criterion 2: torchvision's classifiers (random weights, never downloaded), exported
by each of torch.onnx.export's exporters (TorchScript, dynamo=False, and dynamo=True), import;
their parameter counts are torchvision's, and netspec's re-export of the imported spec and the
NumPy engine's forward agree with the original within 1e-4.

Inputs are as small as each model allows; AlexNet and VGG-16 need 224x224, where their adaptive
average pool is a 1x1 AveragePool (6x6 -> 6x6, 7x7 -> 7x7). The dynamo exporter writes the
others' as ReduceMean over (2, 3) and their flatten as a Reshape to [1, C]."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.onnx.foreign import import_torch


def _torchvision() -> Any:
    """torchvision, even where its wheel's C++ ops were built against a CUDA torch: with the
    CPU torch here its `_C` does not load and its fake-op registrations fail at import. The
    classifiers need neither (they call no torchvision op), so that one module is stood in."""
    try:
        import torchvision
    except RuntimeError:
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        stand_in = types.ModuleType("torchvision._meta_registrations")
        sys.modules["torchvision._meta_registrations"] = stand_in
        import torchvision
    return torchvision


# name -> (input side, constructor arguments, slow)
MODELS: dict[str, tuple[int, dict[str, Any], bool]] = {
    "alexnet": (224, {}, True),
    "vgg16": (224, {}, True),
    "resnet18": (64, {}, False),
    "resnet50": (64, {}, True),
    "googlenet": (64, {"aux_logits": False, "init_weights": True}, False),
    "squeezenet1_0": (64, {}, False),
    "squeezenet1_1": (64, {}, False),
    "densenet121": (64, {}, True),
    "mobilenet_v2": (64, {}, False),
}


def _build(name: str) -> tuple[Any, torch.Tensor]:
    side, kwargs, _ = MODELS[name]
    torch.manual_seed(0)
    model = getattr(_torchvision().models, name)(weights=None, **kwargs)
    return model, torch.randn(1, 3, side, side)


EXPORTERS = {"torchscript": False, "dynamo": True}


def _case(name: str, exporter: str) -> Any:
    marks = [pytest.mark.slow] if MODELS[name][2] else []
    return pytest.param(name, EXPORTERS[exporter], id=f"{name}-{exporter}", marks=marks)


# What the spec must say for the ops a model needs that netspec had to gain or map: MobileNet's
# ReLU6 (Clip(0, 6)) and depthwise convs (groups), SqueezeNet's and GoogLeNet's concats.
SAYS = {
    "mobilenet_v2": ["clip(0.0, 6.0)", "groups=32"],
    "squeezenet1_0": ["concat("],
    "googlenet": ["concat(", "ceil_mode=true"],
}


@pytest.mark.parametrize(("name", "dynamo"), [_case(n, e) for n in MODELS for e in EXPORTERS])
def test_a_torchvision_classifier_imports_with_its_parameters_and_outputs(
    name: str, dynamo: bool, tmp_path: Path
) -> None:
    model, x = _build(name)
    analysis, text = import_torch(model, x, tmp_path, dynamo=dynamo)
    assert analysis.shape(analysis.order[-1]) == (1000,)
    for phrase in SAYS.get(name, []):
        assert phrase in text


@pytest.mark.parametrize("dynamo", list(EXPORTERS.values()), ids=list(EXPORTERS))
def test_a_resnet_exported_with_its_batch_norms_folded_imports_as_plain_convs(
    dynamo: bool, tmp_path: Path
) -> None:
    """The TorchScript exporter's eval mode, and the dynamo one's optimizer (its default),
    fold each batch norm into the conv before it: the import has no batchnorm, conv biases
    instead (the dynamo optimizer drops those that are all zeros), and the same outputs."""
    model, x = _build("resnet18")
    analysis, text = import_torch(model, x, tmp_path, fold=True, dynamo=dynamo)
    assert "batchnorm" not in text
    assert analysis.total_params == analysis.trainable_params
