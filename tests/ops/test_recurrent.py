"""Recurrent ops against torch.nn.RNN/LSTM/GRU: outputs, BPTT gradients, shapes, IR forms."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from netspec.errors import NetspecError, ShapeError
from netspec.ir import Analysis, Node
from netspec.ops.base import Ctx, Op, Params
from netspec.ops.recurrent import Bidirectional, Gru, Lstm, Rnn

N, T, F, H = 3, 4, 3, 5
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
INNER = {"rnn": Rnn, "lstm": Lstm, "gru": Gru}

# (kind, nonlinearity) pairs: Elman RNN in both nonlinearities, LSTM, GRU.
KINDS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]


def make(kind: str, nonlin: str | None, seq: bool, bidir: bool) -> tuple[Op, torch.nn.Module]:
    """A netspec op and the float64 torch module it should equal."""
    extra = {} if nonlin is None else {"nonlinearity": nonlin}
    inner = INNER[kind](hidden=H, return_sequences=seq, **extra)
    op: Op = Bidirectional(layer=inner) if bidir else inner
    torch.manual_seed(0)
    mod = TORCH[kind](F, H, batch_first=True, bidirectional=bidir, **extra).double()
    return op, mod


def params_from(mod: torch.nn.Module, bidir: bool) -> Params:
    """Copy torch's weights under netspec's local names (same layout and gate order)."""
    p: Params = {}
    for local in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t = getattr(mod, f"{local}_l0").detach().numpy().copy()
        if bidir:
            p[f"fwd.{local}"] = t
            p[f"bwd.{local}"] = getattr(mod, f"{local}_l0_reverse").detach().numpy().copy()
        else:
            p[local] = t
    return p


def torch_output(mod: torch.nn.Module, x: torch.Tensor, seq: bool, bidir: bool) -> torch.Tensor:
    out, h_n = mod(x)
    if seq:
        return out
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # LSTM returns (h_n, c_n)
    return torch.cat([h_n[0], h_n[1]], dim=-1) if bidir else h_n[0]


def torch_grad_name(local: str) -> str:
    if local.startswith("bwd."):
        return f"{local[4:]}_l0_reverse"
    return f"{local.removeprefix('fwd.')}_l0"


# One step has no recurrent product at all (the LSTM skips it); four have three.
@pytest.mark.parametrize("steps", [1, T])
@pytest.mark.parametrize("bidir", [False, True], ids=["plain", "bidirectional"])
@pytest.mark.parametrize("seq", [False, True], ids=["last", "sequence"])
@pytest.mark.parametrize(("kind", "nonlin"), KINDS)
def test_recurrent_matches_torch_outputs_and_every_gradient_in_float64(
    kind: str, nonlin: str | None, seq: bool, bidir: bool, steps: int
) -> None:
    op, mod = make(kind, nonlin, seq, bidir)
    p = params_from(mod, bidir)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, steps, F))
    dy_shape = (N, steps, H * (2 if bidir else 1)) if seq else (N, H * (2 if bidir else 1))
    dy = rng.standard_normal(dy_shape)

    y, cache = op.forward([x], p, Ctx())
    (dx,), grads = op.backward(dy, cache, p)

    xt = torch.tensor(x, requires_grad=True)
    yt = torch_output(mod, xt, seq, bidir)
    (yt * torch.tensor(dy)).sum().backward()

    assert y.shape == (N, *op.infer_shape([(steps, F)])) == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert dx is not None and xt.grad is not None
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    assert set(grads) == set(p) == set(op.param_shapes([(steps, F)]))
    for local, g in grads.items():
        tg = getattr(mod, torch_grad_name(local)).grad
        np.testing.assert_allclose(g, tg.numpy(), rtol=1e-9, atol=1e-12, err_msg=local)


@pytest.mark.parametrize("bidir", [False, True], ids=["plain", "bidirectional"])
@pytest.mark.parametrize(("kind", "nonlin"), KINDS)
def test_recurrent_forward_stays_float32_and_matches_torch(
    kind: str, nonlin: str | None, bidir: bool
) -> None:
    op, mod = make(kind, nonlin, True, bidir)
    p = {k: v.astype(np.float32) for k, v in params_from(mod, bidir).items()}
    x = np.random.default_rng(2).standard_normal((N, T, F)).astype(np.float32)
    y, cache = op.forward([x], p, Ctx())
    (dx,), grads = op.backward(np.ones_like(y), cache, p)
    assert y.dtype == np.float32 and dx is not None and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    with torch.no_grad():
        ref = torch_output(mod.float(), torch.tensor(x), True, bidir).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bidir", [False, True], ids=["plain", "bidirectional"])
@pytest.mark.filterwarnings("error")
def test_a_saturated_float32_lstm_stays_finite_silent_and_equal_to_torch(bidir: bool) -> None:
    """The LSTM's gates are 1 / (1 + e^-z): e^-z overflows to inf for z << 0, which must give
    sigmoid 0 (and tanh -1) without a RuntimeWarning, and gradients that vanish, not NaN."""
    op, mod = make("lstm", None, True, bidir)
    with torch.no_grad():
        for w in mod.parameters():
            w.mul_(40.0)  # pre-activations of several hundred: e^-z overflows float32
    p = {k: v.astype(np.float32) for k, v in params_from(mod, bidir).items()}
    x = np.random.default_rng(3).standard_normal((N, T, F)).astype(np.float32)
    dy = np.random.default_rng(4).standard_normal((N, T, H * (2 if bidir else 1)))
    y, cache = op.forward([x], p, Ctx())
    (dx,), grads = op.backward(dy.astype(np.float32), cache, p)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_output(mod.float(), xt, True, bidir)
    (yt * torch.tensor(dy, dtype=torch.float32)).sum().backward()
    assert xt.grad is not None and dx is not None
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-3)
    for local, g in grads.items():
        assert np.isfinite(g).all(), local
        tg = getattr(mod, torch_grad_name(local)).grad.numpy()
        np.testing.assert_allclose(g, tg, rtol=1e-4, atol=1e-3 * np.abs(tg).max(), err_msg=local)


@pytest.mark.parametrize(("kind", "nonlin"), KINDS)
def test_param_shapes_and_macs_follow_torchs_weights(kind: str, nonlin: str | None) -> None:
    op, mod = make(kind, nonlin, False, True)
    shapes = op.param_shapes([(T, F)])
    assert shapes == {local: tuple(getattr(mod, torch_grad_name(local)).shape) for local in shapes}
    # Each weight-matrix entry is one multiply-accumulate per time step and direction.
    weights = sum(np.prod(s) for k, s in shapes.items() if "weight" in k)
    assert op.macs([(T, F)], op.infer_shape([(T, F)])) == T * weights


@pytest.mark.parametrize("bad", [(3, 8, 8), (7,)])
@pytest.mark.parametrize("cls", [Rnn, Lstm, Gru])
def test_a_non_sequence_input_is_refused_with_a_reshape_hint(
    cls: type[Rnn | Lstm | Gru], bad: tuple[int, ...]
) -> None:
    for op in (cls(hidden=4), Bidirectional(layer=cls(hidden=4))):
        with pytest.raises(ShapeError, match=r"2-D input .*time steps x features") as err:
            op.infer_shape([bad])
        assert str(list(bad)) in str(err.value)
        assert err.value.hint is not None
        assert "reshape" in err.value.hint and "flatten" in err.value.hint


def test_bidirectional_accepts_the_dsl_call_form_and_round_trips_through_ir_json() -> None:
    call = {"name": "lstm", "args": [4], "return_sequences": True, "init": "glorot"}
    op = Bidirectional.model_validate({"op": "bidirectional", "layer": call})
    assert op.layer == Lstm(hidden=4, return_sequences=True, init="glorot")  # type: ignore[arg-type]
    assert op.init_hint() == op.layer.init
    assert Bidirectional.model_validate(
        {"op": "bidirectional", "layer": {"name": "lstm", "args": [4]}}
    ).layer == Lstm(hidden=4)
    assert Bidirectional.model_validate_json(op.model_dump_json()) == op
    node = Node(name="bi", op=op, inputs=("x",))  # through the registry's discriminated union
    assert Node.model_validate_json(node.model_dump_json()) == node


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        ({"name": "dense", "args": [4]}, "wraps rnn, lstm or gru"),
        ({"name": "gru", "args": [4, 5]}, "at most 1 positional"),
        ({"name": "rnn", "args": [4], "nonlinearity": "sigmoid"}, "nonlinearity"),
        ({"name": "lstm", "args": [0]}, "hidden: Input should be greater"),
        ("lstm", "lstm needs 'hidden'"),
        ({"name": "lstm", "args": [4], "return_sequence": True}, "did you mean 'return_sequences'"),
    ],
)
def test_bidirectional_rejects_a_bad_inner_layer_in_its_own_words(
    layer: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Bidirectional.model_validate({"op": "bidirectional", "layer": layer})


def test_a_bidirectional_lstm_in_a_spec_names_its_directions_and_counts_both(
    analyse: Callable[..., Analysis],
) -> None:
    a = analyse(
        "network N {\n  input x: [5, 3]\n  bi = bidirectional(lstm(4, return_sequences=true))\n"
        "  gru(2)\n}\n"
    )
    bi = a.layers["bi"]
    assert bi.output_shape == (5, 8)
    assert set(bi.param_shapes) == {
        f"{d}.{k}" for d in ("fwd", "bwd") for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    assert bi.macs == 2 * 5 * 16 * (3 + 4)
    assert a.layers[a.order[-1]].output_shape == (2,)


def test_a_bad_inner_layer_in_a_spec_is_a_located_error(build: Callable[..., object]) -> None:
    with pytest.raises(NetspecError) as err:
        build("network N {\n  input x: [5, 3]\n  bidirectional(gru(4, foo=1))\n}\n")
    (diag,) = err.value.diagnostics
    assert "gru has no attribute 'foo'" in diag.message
    assert diag.span is not None and (diag.span.line, diag.span.column) == (3, 17)


@pytest.mark.parametrize(
    ("inner", "says"),
    [
        ("lstm(true)", "lstm: hidden: Input should be a valid integer, got true"),
        (
            'gru(4, return_sequences="yes")',
            'return_sequences: Input should be a valid boolean, got "yes"',
        ),
    ],
)
def test_an_inner_layer_holds_its_literals_to_their_types_as_any_op(
    build: Callable[..., object], inner: str, says: str
) -> None:
    with pytest.raises(NetspecError) as err:
        build(f"network N {{\n  input x: [5, 3]\n  bidirectional({inner})\n}}\n")
    (diag,) = err.value.diagnostics
    assert says in diag.message
