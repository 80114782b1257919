"""netspec.torch.lower: the GraphModule's names, inputs and outputs, weight loading, the
`compile --target torch` command, and the wrappers it must go through (DDP, torch.compile)."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from netspec.cli import main
from netspec.errors import NetspecError
from netspec.ir import Network, Node
from netspec.ops.activation import Relu
from netspec.ops.io import Input
from netspec.torch import NodeModule, load_params, lower, params_of, torch_code

from .nets import ROOT, analysis_of, analysis_text, as_tensors, inputs, numpy_forward, weights
from .test_library import BILSTM, RESNET_BLOCK, assert_close

TWO_WAY = """
network TwoWay {
  input image: [2, 5, 5]
  input extra: [3]
  features = image -> conv2d(3, 3) relu flatten
  concat(features, extra)
  joined = dense(4)
  side = extra -> dense(2) tanh
  output side, joined
}
"""


def test_state_dict_keys_are_netspecs_weight_names_nested_by_their_dots() -> None:
    resnet = lower(analysis_of(ROOT / "specs" / "resnet20.net"), device="meta")
    keys = set(resnet.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer3.2.conv2.weight"} <= keys
    assert isinstance(resnet.get_submodule("layer3.2.conv2"), NodeModule)
    bilstm = lower(analysis_text(BILSTM), device="meta")
    assert {"bidirectional_1.fwd.weight_ih", "bidirectional_2.bwd.bias_hh"} <= set(
        bilstm.state_dict()
    )


def test_the_module_takes_the_inputs_by_name_and_returns_the_outputs_in_their_order() -> None:
    analysis = analysis_text(TWO_WAY)
    params, xs = weights(analysis), inputs(analysis, batch=3)
    module = lower(analysis, params)
    assert list(inspect.signature(module.forward).parameters) == ["image", "extra"]
    side, joined = module(extra=torch.from_numpy(xs["extra"]), image=torch.from_numpy(xs["image"]))
    want = numpy_forward(analysis, params, xs)
    first, second = analysis.network.outputs  # `side`'s last layer, then `joined`
    assert first.startswith("side") and second == "joined"
    assert_close(side.detach().numpy(), want[first], first)
    assert_close(joined.detach().numpy(), want[second], second)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_go_in_and_come_out_by_name_with_their_dtype(dtype: type) -> None:
    analysis = analysis_text(RESNET_BLOCK)
    params = {k: v.astype(dtype) for k, v in weights(analysis).items()}
    module = lower(analysis)
    load_params(module, params)
    back = params_of(module)
    assert list(back) == sorted(params)
    for name, value in params.items():
        assert back[name].dtype == dtype
        np.testing.assert_array_equal(back[name], value)
    # Copies both ways: training never writes into the caller's arrays, nor they into it.
    module.get_parameter("stem.weight").data.add_(1.0)
    np.testing.assert_array_equal(params["stem.weight"], back["stem.weight"])
    assert params_of(lower(analysis, params))["bn0.running_var"].dtype == dtype


def test_weights_not_loaded_are_nan_and_those_an_op_fixes_are_set() -> None:
    module = lower(analysis_text(RESNET_BLOCK))
    p = params_of(module)
    assert np.isnan(p["stem.weight"]).all()
    np.testing.assert_array_equal(p["bn0.weight"], np.ones(6, np.float32))
    np.testing.assert_array_equal(p["bn0.running_var"], np.ones(6, np.float32))
    assert p["bn0.bias"].dtype == np.float32


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: p.pop("bn1.running_var"), "missing 'bn1.running_var'"),
        (lambda p: p.update({"bn1.runing_mean": p["bn1.running_mean"]}), "did you mean"),
        (lambda p: p.update({"stem.weight": np.zeros((6, 4, 3))}), "'stem.weight' has shape"),
    ],
    ids=["missing", "unexpected", "misshapen"],
)
def test_weights_that_do_not_fit_are_refused_with_their_names(change: object, says: str) -> None:
    analysis = analysis_text(RESNET_BLOCK)
    params = weights(analysis)
    change(params)  # type: ignore[operator]
    module = lower(analysis)
    before = params_of(module)
    for attempt in (lambda: load_params(module, params), lambda: lower(analysis, params)):
        with pytest.raises(NetspecError, match=says) as err:
            attempt()
        assert err.value.exit_code == 3
    assert all(np.array_equal(v, before[k], equal_nan=True) for k, v in params_of(module).items())


def test_a_layer_named_like_another_layers_parameters_is_refused() -> None:
    # `rnn` holds fwd.* and bwd.*; a layer `rnn.fwd` would need the same submodule.
    analysis = analysis_text("network N {\n input x: [3, 2]\n rnn = bidirectional(rnn(2))\n}\n")
    net = analysis.network
    clash = Node(name="rnn.fwd", op=Relu(), inputs=("rnn",))
    bad = Network(name="N", nodes=(*net.nodes, clash), outputs=("rnn.fwd",))
    from netspec import api

    with pytest.raises(NetspecError, match=r"'rnn\.fwd' cannot be a torch submodule"):
        lower(api.check(bad))


def test_a_layer_named_like_a_module_method_is_refused_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "n.net"
    spec.write_text("network N {\n  input x: [4]\n  train = dense(3)\n}\n", encoding="utf-8")
    assert main(["compile", str(spec), "--target", "torch"]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:3:" in err and "'train' is taken by a torch.nn.Module attribute" in err


def test_a_keyword_input_name_is_refused_rather_than_generating_broken_code() -> None:
    from netspec import api

    net = Network(
        name="K",
        nodes=(
            Node(name="lambda", op=Input(shape=(3,))),
            Node(name="r", op=Relu(), inputs=("lambda",)),
        ),
        outputs=("r",),
    )
    with pytest.raises(NetspecError, match="Python keyword"):
        lower(api.check(net))


# ---- netspec compile --target torch ----------------------------------------------------------


def test_compile_target_torch_prints_the_modules_code_and_its_layers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = ROOT / "examples" / "digits_cnn.net"
    assert main(["compile", str(spec), "--target", "torch"]) == 0
    out = capsys.readouterr().out
    module = lower(analysis_of(spec), device="meta")
    assert module.code.strip() in out
    assert "def forward(self, image):" in out and "return (dense_2,)" in out
    row = r"#   conv2d_1 +conv2d\(filters=32, kernel=3, padding=1\)  weight \[32, 1, 3, 3\]"
    assert re.search(row, out)
    compile(out, "code", "exec")  # the printed text is Python


def test_compile_target_torch_writes_the_code_with_o(tmp_path: Path) -> None:
    spec = ROOT / "specs" / "resnet20.net"
    out = tmp_path / "resnet20.py"
    assert main(["compile", str(spec), "--target", "torch", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == torch_code(analysis_of(spec)).rstrip("\n")


def test_compile_target_torch_without_torch_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    for name in [m for m in sys.modules if m.startswith("netspec.torch")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["compile", str(ROOT / "examples" / "xor.net"), "--target", "torch"]) == 3
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "pip install 'netspec[torch]'" in err
    assert "Traceback" not in err


# ---- the wrappers a training engine puts around it -------------------------------------------


def _loss_and_grads(module: torch.nn.Module, xs: list[torch.Tensor], r: torch.Tensor) -> object:
    (y,) = module(*xs)
    (y * r).sum().backward()
    return y.detach()


def test_distributed_data_parallel_takes_the_module_and_gives_its_gradients(
    tmp_path: Path,
) -> None:
    analysis = analysis_text(RESNET_BLOCK)
    params, xs = weights(analysis), as_tensors(analysis, inputs(analysis, batch=4))
    r = torch.from_numpy(np.random.default_rng(3).normal(size=(4, 3)))
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        plain = lower(analysis, params)
        wrapped = torch.nn.parallel.DistributedDataParallel(lower(analysis, params))
        want = _loss_and_grads(plain, xs, r)
        got = _loss_and_grads(wrapped, xs, r)
    finally:
        dist.destroy_process_group()
    assert torch.equal(got, want)  # type: ignore[arg-type]
    assert params_of(wrapped).keys() == params_of(plain).keys() == params.keys()
    ours = dict(wrapped.module.named_parameters())
    for name, p in plain.named_parameters():
        assert p.grad is not None and ours[name].grad is not None
        assert_close(ours[name].grad.numpy(), p.grad.numpy(), name, tol=1e-12)
    for name, value in params_of(plain).items():  # the running statistics moved alike
        np.testing.assert_array_equal(params_of(wrapped)[name], value)


@pytest.mark.slow  # inductor compiles C++ for ~30 s on two cores
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_takes_the_whole_module_as_one_graph_and_matches_eager() -> None:
    analysis = analysis_text(RESNET_BLOCK)
    params, xs = weights(analysis), as_tensors(analysis, inputs(analysis, batch=4))
    r = torch.from_numpy(np.random.default_rng(4).normal(size=(4, 3)))
    eager = lower(analysis, params)
    compiled = torch.compile(lower(analysis, params), fullgraph=True)  # no graph break
    want = _loss_and_grads(eager, xs, r)
    got = _loss_and_grads(compiled, xs, r)
    assert_close(got.numpy(), want.numpy(), "output")  # type: ignore[attr-defined]
    grads = {n: p.grad for n, p in compiled.named_parameters()}
    for name, p in eager.named_parameters():
        assert p.grad is not None
        assert_close(grads[f"_orig_mod.{name}"].numpy(), p.grad.numpy(), name)
    compiled_params = params_of(compiled)
    assert compiled_params.keys() == params.keys()
    for name, value in params_of(eager).items():  # batchnorm's buffers moved in place
        assert_close(compiled_params[name], value, name)


def test_the_readme_torch_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### PyTorch", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # the documented example, as written
    logits, weights = scope["logits"], scope["weights"]
    assert isinstance(logits, torch.Tensor) and tuple(logits.shape) == (4, 10)
    assert isinstance(weights, dict) and weights["conv2d_1.weight"].shape == (32, 1, 3, 3)
