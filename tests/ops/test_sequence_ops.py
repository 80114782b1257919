"""The transformer, autoencoder and U-Net ops against PyTorch's own modules (float64, autograd):
nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention, nn.ConvTranspose2d, nn.Upsample; plus their
shape errors and the ONNX lowerings the contract test's default opset does not reach."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from netspec import api
from netspec.errors import NetspecError, ShapeError, render_all
from netspec.ir import Network, Node
from netspec.onnx.export import to_onnx_model
from netspec.ops.attention import Attention
from netspec.ops.base import Array, Ctx, Op, Params
from netspec.ops.deconv import ConvTranspose2d
from netspec.ops.io import Input
from netspec.ops.normalize import GroupNorm, LayerNorm
from netspec.ops.resize import Upsample2d
from netspec.ops.sequence import Mean, Positional, Sinusoidal, Slice

rng = np.random.default_rng(0)


def close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-11)


def ours(
    op: Op, xs: list[Array], p: Params, dy: Array, train: bool = True
) -> tuple[Array, list[Array | None], dict[str, Array]]:
    y, cache = op.forward(xs, p, Ctx(train=train))
    dxs, grads = op.backward(dy, cache, p)
    return y, dxs, grads


def module_grads(
    module: torch.nn.Module, xs: list[Array], dy: Array, call: Callable[..., Any] | None = None
) -> tuple[Array, list[Array], dict[str, Array]]:
    """A torch module's output and the gradients of sum(y * dy) for its inputs and params."""
    module = module.double()
    tx = [torch.tensor(x, requires_grad=True) for x in xs]
    y = call(module, *tx) if call else module(*tx)
    (y * torch.tensor(dy)).sum().backward()
    grads = {k: v.grad.numpy() for k, v in module.named_parameters()}
    return y.detach().numpy(), [t.grad.numpy() for t in tx], grads


def params_of(module: torch.nn.Module) -> Params:
    return {k: v.detach().double().numpy().copy() for k, v in module.named_parameters()}


def randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights (torch starts norms at 1 and 0, which hides a transposed gradient)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for v in module.parameters():
            v.copy_(torch.randn(v.shape, generator=g) * 0.5)
    return module


def test_layernorm_matches_nn_layernorm() -> None:
    x = rng.normal(size=(3, 5, 8)) * 3 + 1
    module = randomise(torch.nn.LayerNorm(8, eps=1e-4))
    dy = rng.normal(size=x.shape)
    y, (dx,), grads = ours(LayerNorm(eps=1e-4), [x], params_of(module), dy)
    ty, (tdx,), tgrads = module_grads(module, [x], dy)
    close(y, ty)
    close(dx, tdx)
    for k in ("weight", "bias"):
        close(grads[k], tgrads[k])


@pytest.mark.parametrize("shape", [(6, 4, 3), (6, 5), (6,)])
def test_groupnorm_matches_nn_groupnorm(shape: tuple[int, ...]) -> None:
    x = rng.normal(size=(2, *shape)) * 2 - 1
    module = randomise(torch.nn.GroupNorm(3, 6, eps=1e-5))
    dy = rng.normal(size=x.shape)
    y, (dx,), grads = ours(GroupNorm(groups=3), [x], params_of(module), dy)
    ty, (tdx,), tgrads = module_grads(module, [x], dy)
    close(y, ty)
    close(dx, tdx)
    for k in ("weight", "bias"):
        close(grads[k], tgrads[k])


def test_groupnorm_names_the_group_counts_that_divide_the_channels() -> None:
    with pytest.raises(ShapeError) as err:
        GroupNorm(groups=5).infer_shape([(12, 4, 4)])
    assert "12 is not divisible by 5" in str(err.value)
    assert err.value.hint is not None and "4 or 6" in err.value.hint


def onnx_run(op: Op, shapes: list[tuple[int, ...]], p: Params, xs: list[Array], opset: int) -> Any:
    inputs = [Node(name=f"x{i}", op=Input(shape=s)) for i, s in enumerate(shapes)]
    node = Node(name="op", op=op, inputs=tuple(n.name for n in inputs))
    analysis = api.check(Network(name="t", nodes=(*inputs, node), outputs=("op",)))
    model = to_onnx_model(analysis, {f"op.{k}": v for k, v in p.items()}, opset=opset)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {f"x{i}": x for i, x in enumerate(xs)})[0]


def test_layernorm_before_opset_17_exports_its_decomposition() -> None:
    x = rng.normal(size=(2, 4, 6)).astype(np.float32)
    p = {"weight": rng.normal(size=6).astype(np.float32), "bias": rng.normal(size=6)}
    p["bias"] = p["bias"].astype(np.float32)
    y, _ = LayerNorm().forward([x], p, Ctx())
    got = onnx_run(LayerNorm(), [(4, 6)], p, [x], opset=13)
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)


def test_sinusoidal_positions_are_the_pytorch_tutorials_table() -> None:
    # The table of PyTorch's transformer tutorial (PositionalEncoding), written as it is there.
    t, d = 7, 6
    position = torch.arange(t).unsqueeze(1).double()
    div_term = torch.exp(torch.arange(0, d, 2).double() * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    x = rng.normal(size=(2, t, d))
    y, _ = Sinusoidal().forward([x], {}, Ctx())
    close(y, x + pe.numpy())


def test_a_sequence_longer_than_max_len_names_the_length_to_raise_it_to() -> None:
    with pytest.raises(ShapeError) as err:
        Positional(max_len=4).infer_shape([(6, 8)])
    assert "6 positions" in str(err.value) and "at least 6" in str(err.value.hint)


def test_mean_over_the_sequence_is_torchs_mean() -> None:
    x = rng.normal(size=(3, 5, 4))
    dy = rng.normal(size=(3, 4))
    y, (dx,), _ = ours(Mean(axis=0), [x], {}, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tx.mean(dim=1)
    (ty * torch.tensor(dy)).sum().backward()
    close(y, ty.detach().numpy())
    close(dx, tx.grad.numpy())


@pytest.mark.parametrize(("causal", "bias"), [(False, True), (True, True), (False, False)])
def test_attention_matches_nn_multiheadattention_with_its_state_dict(
    causal: bool, bias: bool
) -> None:
    t, d, heads = 5, 8, 2
    module = randomise(torch.nn.MultiheadAttention(d, heads, bias=bias, batch_first=True))
    x = rng.normal(size=(3, t, d))
    dy = rng.normal(size=x.shape)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(t, dtype=torch.float64)

    def call(m: torch.nn.Module, tx: torch.Tensor) -> torch.Tensor:
        out, _ = m(tx, tx, tx, need_weights=False, attn_mask=mask if causal else None)
        return out

    op = Attention(heads=heads, causal=causal, bias=bias)
    p = params_of(module)
    assert set(p) == set(op.param_shapes([(t, d)]))
    y, (dx,), grads = ours(op, [x], p, dy)
    ty, (tdx,), tgrads = module_grads(module, [x], dy, call)
    close(y, ty)
    close(dx, tdx)
    for k, g in tgrads.items():
        close(grads[k], g)
    assert sum(g.size for g in grads.values()) == sum(v.numel() for v in module.parameters())


@pytest.mark.parametrize("causal", [False, True])
def test_attention_rows_far_below_their_matrix_max_stay_exact(causal: bool) -> None:
    """The scores are shifted by each matrix's max, not each row's: a row thousands below it
    underflows to 0 even in float64 unless its matrix is redone with the row max (NaN before)."""
    t, d, heads = 4, 8, 2
    module = randomise(torch.nn.MultiheadAttention(d, heads, batch_first=True))
    x = rng.normal(size=(3, t, d))
    x[:, 1] *= 100.0  # position 1's score against itself is ~1e4, the other rows' ~1e2
    dy = rng.normal(size=x.shape)

    def call(m: torch.nn.Module, tx: torch.Tensor) -> torch.Tensor:
        mask = torch.nn.Transformer.generate_square_subsequent_mask(t, dtype=tx.dtype)
        return m(tx, tx, tx, need_weights=False, attn_mask=mask if causal else None)[0]

    y, (dx,), grads = ours(Attention(heads=heads, causal=causal), [x], params_of(module), dy)
    ty, (tdx,), tgrads = module_grads(module, [x], dy, call)
    for got, want in [(y, ty), (dx, tdx), *((grads[k], g) for k, g in tgrads.items())]:
        # scores of 1e4 carry float64's rounding at 1e-12: the comparison is that much looser
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("bias", [True, False])
def test_cross_attention_matches_nn_multiheadattention_with_query_not_key(bias: bool) -> None:
    t, s, d, heads = 4, 6, 8, 2
    module = randomise(torch.nn.MultiheadAttention(d, heads, bias=bias, batch_first=True))
    x, memory = rng.normal(size=(3, t, d)), rng.normal(size=(3, s, d))
    dy = rng.normal(size=x.shape)

    def call(m: torch.nn.Module, tx: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
        out, _ = m(tx, tm, tm, need_weights=False)
        return out

    op = Attention(heads=heads, bias=bias)
    assert op.infer_shape([(t, d), (s, d)]) == (t, d)
    p = params_of(module)
    assert set(p) == set(op.param_shapes([(t, d), (s, d)]))
    y, (dx, dm), grads = ours(op, [x, memory], p, dy)
    ty, (tdx, tdm), tgrads = module_grads(module, [x, memory], dy, call)
    close(y, ty)
    close(dx, tdx)
    close(dm, tdm)
    for k, g in tgrads.items():
        close(grads[k], g)


CROSS = """network Decoder {{
  input x: [4, 8]
  input memory: [{s}, {e}]
  {body}
}}
"""


def check_text(text: str) -> Any:
    return api.check(api.load(Path("d.net"), text=text))


@pytest.mark.parametrize(
    "body",
    [
        "y = attention(x, memory, heads=2)",
        "y = x -> attention(memory, heads=2)",
        "y = x -> attention(memory, 2)",
    ],
)
def test_cross_attention_is_written_with_its_memory_like_a_merge(body: str) -> None:
    analysis = check_text(CROSS.format(s=6, e=8, body=body))
    node = analysis.network.node("y")
    assert node.inputs == ("x", "memory") and analysis.shape("y") == (4, 8)
    assert analysis.trainable_params == 4 * 8 * 8 + 4 * 8


def test_a_block_parameter_named_like_heads_stays_a_value() -> None:
    text = (
        "block B(heads: int) {\n  attention(heads)\n}\nnetwork N {\n  input x: [4, 8]\n  B(2)\n}\n"
    )
    assert check_text(text).shape("b_1.attention_1") == (4, 8)


@pytest.mark.parametrize(
    ("s", "e", "body", "says", "hint"),
    [
        (
            6,
            8,
            "y = attention(x, memory, heads=2, causal=true)",
            "a causal mask hides later positions of the same sequence",
            "drop causal=true",
        ),
        (6, 5, "y = attention(x, memory, heads=2)", "the memory [6, 5] has 5 features", "dense(8)"),
        (6, 8, "y = attention(x, memory, x, heads=2)", "attention takes at most 2 tensors", None),
        (6, 8, "y = attention(memory, 2)", "would read 'memory' twice", "attention(heads=...)"),
        (6, 8, "y = attention(2, memory)", "attention takes its tensors before its values", None),
    ],
)
def test_a_bad_cross_attention_is_a_located_error(
    s: int, e: int, body: str, says: str, hint: str | None
) -> None:
    with pytest.raises(NetspecError) as err:
        check_text(CROSS.format(s=s, e=e, body=body))
    shown = render_all(err.value.diagnostics)
    assert "d.net:4" in shown and says in shown
    assert hint is None or hint in shown


def test_attention_parameters_are_four_d_squared_plus_four_d() -> None:
    shapes = Attention(heads=8).param_shapes([(10, 64)])
    assert sum(math.prod(s) for s in shapes.values()) == 64 * 64 * 4 + 4 * 64


def test_heads_that_do_not_divide_d_name_the_nearest_head_counts_that_do() -> None:
    with pytest.raises(ShapeError) as err:
        Attention(heads=3).infer_shape([(10, 64)])
    assert "64 is not divisible by 3" in str(err.value)
    assert err.value.hint is not None and "heads=2 or heads=4" in err.value.hint


def test_attention_in_a_spec_reports_the_located_head_error() -> None:
    text = "network A {\n  input x: [10, 64]\n  y = attention(3)\n}\n"
    with pytest.raises(NetspecError) as err:
        api.check(api.load(Path("a.net"), text=text))
    shown = render_all(err.value.diagnostics)
    assert "a.net:3" in shown and "64 is not divisible by 3" in shown


@pytest.mark.parametrize(
    "kw",
    [
        {"stride": 2},
        {"stride": 2, "padding": 1, "output_padding": 1},
        {"stride": (2, 1), "dilation": 2, "groups": 2, "bias": False},
    ],
)
def test_conv_transpose2d_matches_nn_convtranspose2d(kw: dict[str, Any]) -> None:
    module = randomise(torch.nn.ConvTranspose2d(4, 6, 3, **kw))
    x = rng.normal(size=(2, 4, 5, 4))
    op = ConvTranspose2d(filters=6, kernel=3, **kw)
    probe = module.double()(torch.tensor(x))
    dy = rng.normal(size=tuple(probe.shape))
    assert op.infer_shape([x.shape[1:]]) == dy.shape[1:]
    y, (dx,), grads = ours(op, [x], params_of(module), dy)
    ty, (tdx,), tgrads = module_grads(module, [x], dy)
    close(y, ty)
    close(dx, tdx)
    for k, g in tgrads.items():
        close(grads[k], g)


def test_a_transposed_conv_without_output_prints_its_size_rule() -> None:
    with pytest.raises(ShapeError) as err:
        ConvTranspose2d(filters=2, kernel=1, padding=2).infer_shape([(3, 2, 2)])
    assert "out = (H - 1)*S - 2P + D*(K-1) + output_padding + 1" in str(err.value)


def test_output_padding_must_stay_below_the_stride() -> None:
    with pytest.raises(ValueError, match="smaller than the stride"):
        ConvTranspose2d(filters=2, kernel=3, stride=2, output_padding=2)


@pytest.mark.parametrize(("scale", "mode"), [(2, "nearest"), (3, "nearest"), (2, "bilinear")])
def test_upsample2d_matches_nn_upsample(scale: int, mode: str) -> None:
    x = rng.normal(size=(2, 3, 4, 5))
    dy = rng.normal(size=(2, 3, 4 * scale, 5 * scale))
    extra = {"align_corners": False} if mode == "bilinear" else {}
    module = torch.nn.Upsample(scale_factor=scale, mode=mode, **extra)
    y, (dx,), _ = ours(Upsample2d(scale=scale, mode=mode), [x], {}, dy)
    ty, (tdx,), _ = module_grads(module, [x], dy)
    close(y, ty)
    close(dx, tdx)


def test_a_slice_that_keeps_nothing_says_which_axis_and_size() -> None:
    with pytest.raises(ShapeError, match=r"keeps nothing of axis 0 of input \[3, 4\] \(size 3\)"):
        Slice(start=5).infer_shape([(3, 4)])
