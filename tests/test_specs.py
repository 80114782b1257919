"""The library of classic networks in specs/: published parameter and MAC counts, warnings, IR.

Counts are trainable parameters as torchvision (or the paper) counts them; batchnorm running
statistics are non-trainable state and reported apart. Hand-computed counts for the small
networks are derived in the comments below and in each spec's header.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from netspec import api
from netspec.engine import trainer as train_loop
from netspec.errors import NetspecError
from netspec.graph import require
from netspec.ir import Analysis, Network
from netspec.recipe import DataSpec
from netspec.training.plan import io_of

SPECS = Path(__file__).resolve().parent.parent / "specs"

TRAINABLE: dict[str, int] = {
    "perceptron_and": 2 + 1,  # dense(1) on 2 inputs
    "perceptron_or": 2 + 1,
    "xor": (2 * 2 + 2) + (2 * 1 + 1),  # 9
    "cubic": (1 * 6 + 6) + (6 * 1 + 1),  # 19
    "mnist_mlp": (784 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10),  # 235,146
    # dense(1200) -> maxout(5) -> 240 units, twice; then dense(10): 1,233,610
    "maxout_mlp": (784 * 1200 + 1200) + (240 * 1200 + 1200) + (240 * 10 + 10),
    # embedding 10,000 x 128; per LSTM direction 4H(F + H) + 2*4H with H = 64, F = 128;
    # dense on the joined 2H = 128 features: 1,379,586
    "text_bilstm": 10_000 * 128 + 2 * (4 * 64 * (128 + 64) + 2 * 4 * 64) + (128 * 2 + 2),
    "lenet5": 61_706,
    "caffe_lenet": 431_080,
    "cifar10_cnn": 145_578,
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "resnet152": 60_192_808,
    "resnet20": 269_722,
    "resnet1202": 19_421_274,
    # both derived in the spec's header and checked against torch's modules below
    "transformer_encoder": 172_290,
    "conv_autoencoder": 6_929,
    "vit_tiny": 69_066,
    "unet_small": 56_689,
    "char_gpt": 109_884,
}

# torchvision's multiply-accumulates at 3x224x224, summed over conv2d and dense layers.
TORCHVISION_MACS: dict[str, int] = {
    "alexnet": 714_188_480,
    "vgg16": 15_470_264_320,
    "resnet18": 1_814_073_344,
    "resnet50": 4_089_184_256,
    "googlenet": 1_498_376_192,
}

# Specs whose train section is part of the point (and so must be present and valid).
TRAINED = ("perceptron_and", "perceptron_or", "xor", "cubic", "mnist_mlp", "lenet5")

DROPPED = "never covers"  # the wording of the dropped-rows warning


@cache
def _load(name: str) -> Network:
    path = SPECS / f"{name}.net"
    try:
        return api.load(path)
    except NetspecError as e:
        # A spec that names an op nobody has registered yet fails here, saying which one.
        missing = [d.message for d in e.diagnostics if d.message.startswith("unknown op")]
        if missing:
            pytest.fail(f"{name}.net needs an op that is not registered: {missing}")
        raise


@cache
def _analyse(name: str) -> tuple[Analysis, tuple[str, ...]]:
    """The analysis and the warning messages (`check` raises on errors, not on warnings)."""
    net = _load(name)
    analysis, diags = api.analyse_network(net)
    require(analysis, diags)  # what api.check does: raise NetspecError listing every error
    return analysis, tuple(d.message for d in diags)


def test_every_spec_file_has_an_expected_parameter_count() -> None:
    on_disk = {p.stem for p in SPECS.glob("*.net")}
    assert on_disk == set(TRAINABLE)


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_spec_has_its_published_trainable_parameter_count(name: str) -> None:
    analysis, _ = _analyse(name)
    assert analysis.trainable_params == TRAINABLE[name]


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_non_trainable_state_is_exactly_the_batchnorm_running_statistics(name: str) -> None:
    # Each batchnorm of C channels has 2C trainable (scale, shift) and 2C running statistics.
    analysis, _ = _analyse(name)
    bn = sum(info.params for info in analysis.layers.values() if info.op == "batchnorm")
    assert analysis.state_params == bn
    assert analysis.total_params == analysis.trainable_params + analysis.state_params


@pytest.mark.parametrize("name", sorted(TORCHVISION_MACS))
def test_conv_and_dense_macs_match_torchvision_at_224(name: str) -> None:
    analysis, _ = _analyse(name)
    assert analysis.network.inputs[0].op.shape == (3, 224, 224)  # type: ignore[attr-defined]
    macs = sum(info.macs for info in analysis.layers.values() if info.op in ("conv2d", "dense"))
    assert macs == TORCHVISION_MACS[name]


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_no_spec_drops_input_rows(name: str) -> None:
    # Strided 1x1 shortcuts (torchvision's downsample, CIFAR option A) subsample on purpose
    # and must stay quiet, as must ResNet's stem, which drops padding only.
    _, warnings = _analyse(name)
    assert [w for w in warnings if DROPPED in w] == []


def test_paper_alexnet_first_convolution_warns_about_dropped_rows() -> None:
    # 224 input, 11x11 kernel, stride 4, no padding: windows start at 0, 4, ..., 212 and cover
    # up to row 222, so row 223 (and column 223) is never read.
    text = (
        "network PaperAlexNet {\n"
        "  input image: [3, 224, 224]\n"
        "  conv1 = conv2d(96, kernel=11, stride=4)\n"
        "}\n"
    )
    net = api.load("paper_alexnet.net", text=text)
    analysis, diags = api.analyse_network(net)
    assert analysis.layers["conv1"].output_shape == (96, 54, 54)
    dropped = [d for d in diags if DROPPED in d.message]
    assert dropped
    assert all(d.severity == "warning" and d.layer == "conv1" for d in dropped)
    text = " ".join(d.message for d in dropped)
    assert "last 1 input row" in text
    assert "last 1 input column" in text


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_spec_ir_round_trips_through_json(name: str) -> None:
    net = _load(name)
    assert Network.model_validate_json(net.model_dump_json()) == net


@pytest.mark.parametrize(
    ("name", "prefix", "op"),
    [
        ("resnet50", "layer3.2.", "conv2d"),
        ("resnet50", "layer1.0.downsample.", "batchnorm"),
        ("resnet18", "layer4.1.", "batchnorm"),
        ("resnet20", "layer3.2.", "conv2d"),
        ("resnet1202", "layer2.199.", "conv2d"),
        ("googlenet", "inception4c.branch2.1.", "conv2d"),
        ("alexnet", "features.", "conv2d"),
        ("vgg16", "classifier.", "dense"),
    ],
)
def test_layer_names_are_hierarchical_like_torchvision(name: str, prefix: str, op: str) -> None:
    analysis, _ = _analyse(name)
    hits = [n for n, info in analysis.layers.items() if n.startswith(prefix) and info.op == op]
    assert hits
    assert any(analysis.layers[n].params > 0 for n in hits)


def test_torchvision_state_dict_names_come_out_of_the_specs() -> None:
    analysis, _ = _analyse("resnet50")
    keys = {
        f"{name}.{local}"
        for name, info in analysis.layers.items()
        for local in (*info.param_shapes, *info.state_shapes)
    }
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer3.2.conv2.weight",
        "layer4.2.bn3.bias",
        "fc.weight",
    ):
        assert key in keys
    alex, _ = _analyse("alexnet")
    assert alex.layers["features.0"].param_shapes["weight"] == (64, 3, 11, 11)
    assert alex.layers["classifier.6"].param_shapes["weight"] == (1000, 4096)


@pytest.mark.parametrize("name", TRAINED)
def test_train_section_is_parsed_and_validated(name: str) -> None:
    train = _load(name).train
    assert train is not None
    assert train.perceptron_rule == name.startswith("perceptron")


def test_resnet1202_is_resnet20_with_more_blocks_per_stage() -> None:
    # 6n + 2 layers: n = 3 and n = 200 differ only in how many basic blocks each stage repeats.
    small, _ = _analyse("resnet20")
    big, _ = _analyse("resnet1202")
    for analysis, n in ((small, 3), (big, 200)):
        convs = sum(info.op == "conv2d" for info in analysis.layers.values())
        assert convs == 6 * n + 1  # plus the final dense layer: 6n + 2
    assert small.shape("linear") == big.shape("linear") == (10,)


# Every spec with a recipe, but the two whose one epoch takes seconds (googlenet at 224x224,
# resnet1202's 1,202 layers): they share every op and recipe feature with the ones here.
RECIPES = sorted(
    name
    for name in TRAINABLE
    if _load(name).train is not None and name not in ("googlenet", "resnet1202")
)


def _random_data(analysis: Analysis, spec: DataSpec, loss: str, path: Path) -> DataSpec:
    """20 random samples shaped for the network, saved where a copy of the recipe reads them."""
    io = io_of(analysis)
    rng = np.random.default_rng(0)
    n = 20
    if io.input_dtype.startswith("int"):
        x: np.ndarray = rng.integers(0, 50, (n, *io.input_shape))
    elif spec.normalize == "scale255":
        x = rng.integers(0, 256, (n, *io.input_shape)).astype(np.uint8)
    else:
        x = rng.normal(size=(n, *io.input_shape)).astype(np.float32)
    if loss == "cross_entropy":  # a class per sample, or per position of a [T, K] output
        y = rng.integers(0, io.output_shape[-1], (n, *io.output_shape[:-1]))
    else:
        y = rng.integers(0, 2, (n, *io.output_shape)).astype(np.float32)
    keys = (spec.x, str(spec.y)) if spec.path.endswith(".npz") else ("x", "y")  # csv: x, y
    np.savez(path, **{keys[0]: x, keys[1]: y})
    return DataSpec(name="npz", path=str(path), x=keys[0], y=keys[1], normalize=spec.normalize)


@pytest.mark.parametrize("name", RECIPES)
def test_every_spec_trains_an_epoch_of_its_own_recipe(name: str, tmp_path: Path) -> None:
    """Its loss, optimizer, penalties, clipping and perceptron rule, on random data."""
    analysis, _ = _analyse(name)
    recipe = analysis.network.train
    assert recipe is not None and recipe.data is not None
    data = _random_data(analysis, recipe.data, recipe.loss, tmp_path / "d.npz")
    result = train_loop.fit(analysis, recipe, tmp_path / "run", data=data, epochs=1, batch=4)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    assert (tmp_path / "run" / "weights.npz").is_file()


# The recipes whose data ship in specs/data, and what their own training reaches.
BUNDLED = {
    "perceptron_and": ("accuracy", 1.0),
    "perceptron_or": ("accuracy", 1.0),
    "xor": ("loss", 0.01),
    "cubic": ("val_mse", 0.05),
}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_smallest_recipes_train_from_their_bundled_data(name: str, tmp_path: Path) -> None:
    analysis, _ = _analyse(name)
    recipe = analysis.network.train
    assert recipe is not None
    last = train_loop.fit(analysis, recipe, tmp_path).history[-1]
    key, goal = BUNDLED[name]
    assert last[key] == goal if key == "accuracy" else last[key] < goal


def _torch_twin_params(name: str) -> int:
    """Trainable parameters of the PyTorch modules each sequence/decoder spec stands for."""
    import torch.nn as nn

    if name == "transformer_encoder":
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, activation="gelu")
        modules: list[nn.Module] = [
            nn.Embedding(1000, 64),
            nn.Embedding(128, 64),  # the learned positions
            nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False),
            nn.Linear(64, 2),
        ]
    elif name == "vit_tiny":
        vit = nn.TransformerEncoderLayer(
            64, 4, dim_feedforward=128, activation="gelu", norm_first=True
        )
        modules = [
            nn.Conv2d(1, 64, 2, stride=2),  # the patches
            nn.Embedding(16, 64),  # the learned positions
            nn.TransformerEncoder(vit, num_layers=2, enable_nested_tensor=False),
            nn.LayerNorm(64),
            nn.Linear(64, 10),
        ]
    elif name == "unet_small":
        modules = [
            nn.Conv2d(1, 16, 3, padding=1),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.Conv2d(32, 64, 3, padding=1),  # the bottleneck
            nn.ConvTranspose2d(64, 32, 2, stride=2),
            nn.Conv2d(32 + 32, 32, 3, padding=1),  # after the skip concat
            nn.ConvTranspose2d(32, 16, 2, stride=2),
            nn.Conv2d(16 + 16, 16, 3, padding=1),
            nn.Conv2d(16, 1, 1),
        ]
    elif name == "char_gpt":  # a GPT block is a pre-norm encoder layer run with a causal mask
        block = nn.TransformerEncoderLayer(
            64, 4, dim_feedforward=256, activation="gelu", norm_first=True
        )
        modules = [
            nn.Embedding(60, 64),
            nn.Embedding(32, 64),  # the learned positions
            nn.TransformerEncoder(block, num_layers=2, enable_nested_tensor=False),
            nn.LayerNorm(64),
            nn.Linear(64, 60),
        ]
    else:
        modules = [
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ConvTranspose2d(32, 16, 2, stride=2),
            nn.ConvTranspose2d(16, 1, 2, stride=2),
        ]
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize(
    "name", ["transformer_encoder", "conv_autoencoder", "vit_tiny", "unet_small", "char_gpt"]
)
def test_spec_has_the_parameter_count_of_its_pytorch_modules(name: str) -> None:
    analysis, _ = _analyse(name)
    assert analysis.trainable_params == _torch_twin_params(name) == TRAINABLE[name]
