"""Lower an analysed network to a `torch.fx.GraphModule` of one submodule per node.

Each IR node becomes a `NodeModule` that owns the node's parameters (trainable) and buffers
(running statistics) under the op's local names and calls the op's `torch_forward`. The
submodules sit at the node's dotted name (`layer3.2.conv2d_1`), so `state_dict()` keys are
netspec's weight names (`layer3.2.conv2d_1.weight`, `bn1.running_mean`, `rnn.fwd.weight_ih`)
and `weights.npz` maps onto the module by name. The graph is built directly (no tracing): its
placeholders are the network's inputs, in declaration order and by name, and it returns a tuple
in `network.outputs` order (also for one output). A tuple, rather than a dict, is what
DistributedDataParallel, torch.compile, torch.jit.trace and torch.onnx all take without options.
"""

from __future__ import annotations

import keyword
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import torch
import torch.fx
from pydantic import BaseModel

from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, NetspecError, suggest
from netspec.ir import Analysis, LayerInfo, Node
from netspec.ops.base import Array, Op, Shape


class NodeModule(torch.nn.Module):
    """One IR node: its op, and its arrays as parameters and buffers under their local names.

    A dotted local name (bidirectional's `fwd.weight_ih`) lives in a child container, so the
    state-dict key is always `node.local`. The op is called with the torch module and
    `self.training`; batchnorm updates its buffers in place, dropout draws from torch's RNG.
    """

    def __init__(
        self,
        node: Node,
        info: LayerInfo,
        arrays: Mapping[str, Array] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """`arrays` by local name (copied, in their dtype); without, see `lower`."""
        super().__init__()
        self.op: Op = node.op
        self.node_name = node.name
        self.locals: tuple[str, ...] = (*info.param_shapes, *info.state_shapes)
        # A frozen layer with running statistics runs as in inference (netspec/freezing.py).
        self.fixed_statistics = False
        for local, shape in info.param_shapes.items():
            owner, leaf = self._owner(local)
            value = self._start(local, shape, arrays, device, trainable=True)
            owner.register_parameter(leaf, torch.nn.Parameter(value))
        for local, shape in info.state_shapes.items():
            owner, leaf = self._owner(local)
            owner.register_buffer(leaf, self._start(local, shape, arrays, device, trainable=False))

    def _start(
        self,
        local: str,
        shape: Shape,
        arrays: Mapping[str, Array] | None,
        device: torch.device | str | None,
        trainable: bool,
    ) -> torch.Tensor:
        if arrays is not None:
            return torch.tensor(np.asarray(arrays[local]), device=device)
        op = self.op
        fixed = op.initial_param(local, shape) if trainable else op.initial_state(local, shape)
        if fixed is None:  # NaN until loaded: see lower()
            return torch.full(shape, float("nan"), dtype=torch.float32, device=device)
        return torch.tensor(np.asarray(fixed), dtype=torch.float32, device=device)

    def _owner(self, local: str) -> tuple[torch.nn.Module, str]:
        """The module that holds `local` (a child container for each dotted part) and its leaf."""
        *parts, leaf = local.split(".")
        owner: torch.nn.Module = self
        for part in parts:
            if part not in owner._modules:
                owner.add_module(part, torch.nn.Module())
            owner = owner._modules[part]  # type: ignore[assignment]
        return owner, leaf

    def arrays(self) -> dict[str, torch.Tensor]:
        """This node's parameters and buffers by local name, as `torch_forward` receives them."""
        p: dict[str, torch.Tensor] = {}
        for local in self.locals:
            obj: Any = self
            for part in local.split("."):
                obj = getattr(obj, part)
            p[local] = obj
        return p

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        train = self.training and not self.fixed_statistics
        return self.op.torch_forward(torch, xs, self.arrays(), train)

    def extra_repr(self) -> str:
        return call_form(self.op)


def freeze(
    model: torch.nn.Module, arrays: Collection[str], fixed: Collection[str]
) -> dict[str, torch.nn.Parameter]:
    """A recipe's frozen layers (netspec/freezing.py) on a lowered module: the parameters in
    `arrays` need no gradient, and the layers in `fixed` keep their running statistics as
    they are. Returns the parameters left to train, by global name."""
    for module in model.modules():
        if isinstance(module, NodeModule) and module.node_name in fixed:
            module.fixed_statistics = True
    params = dict(model.named_parameters())
    for name in arrays:
        params[name].requires_grad_(False)
    return {name: p for name, p in params.items() if name not in arrays}


def call_form(op: Op) -> str:
    """The op as a spec would write it, attributes that differ from their defaults only."""
    return _call(op.kind(), op, "op")


def _call(head: str, model: BaseModel, skip: str) -> str:
    fields = model.model_dump(exclude={skip}, exclude_defaults=True)
    parts = [f"{k}={_shown(getattr(model, k), v)}" for k, v in fields.items()]
    return f"{head}({', '.join(parts)})"


def _shown(attr: Any, dumped: Any) -> str:
    if isinstance(attr, Op):  # bidirectional's layer
        return call_form(attr)
    if isinstance(attr, BaseModel):  # an initialiser: he_normal(), normal(std=0.02)
        return _call(str(getattr(attr, "name", type(attr).__name__)), attr, "name")
    if isinstance(dumped, bool):
        return "true" if dumped else "false"
    if isinstance(dumped, str):
        return f'"{dumped}"'
    if isinstance(dumped, tuple | list):
        return "[" + ", ".join(str(v) for v in dumped) + "]"
    return str(dumped)


def _is_input(node: Node) -> bool:
    return not node.inputs and node.op.arity == 0


def _attach(root: torch.nn.Module, node: Node, module: NodeModule) -> None:
    """Put a node's module at its dotted name, inside the modules of shorter names."""
    *parts, leaf = node.name.split(".")
    owner = root
    for part in parts:
        if part not in owner._modules:
            _refuse_taken(owner, node, part)
            owner.add_module(part, torch.nn.Module())
        owner = owner._modules[part]  # type: ignore[assignment]
    _refuse_taken(owner, node, leaf)
    owner.add_module(leaf, module)


def _refuse_taken(owner: torch.nn.Module, node: Node, part: str) -> None:
    """A located error when `part` of a layer's name already means something on `owner`: a
    torch.nn.Module attribute (`train`, `forward`, `to`) or another layer's array or module."""
    if part not in owner._modules and not hasattr(owner, part):
        return
    if part in owner._modules:
        what = "already another layer's submodule"
    else:
        what = "taken by a torch.nn.Module attribute (train, forward, to, ...) or an array"
    raise NetspecError.at(
        f"layer '{node.name}' cannot be a torch submodule: '{part}' is {what}",
        node.span,
        hint="rename the layer",
        layer=node.name,
        exit_code=EXIT_SPEC,
    )


def lower(
    analysis: Analysis,
    params: Mapping[str, Array] | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.fx.GraphModule:
    """The network as a GraphModule: `module(*inputs)` (positional in declaration order, or by
    input name) returns a tuple of tensors in `network.outputs` order.

    With `params` (netspec's arrays by global name, as `weights.npz` holds them; checked as
    `load_params` checks them) the module holds copies in their dtype; without, only the arrays
    an op fixes itself (running statistics, batchnorm's affine, prelu's slope) are set, in
    float32, and every other weight is NaN, so a forgotten load is loud: fresh weights come from
    netspec's initialiser (`netspec.initializers.init_params`), then `load_params`. The tensors
    are made on `device` (default: torch's; "meta" allocates nothing).
    """
    net = analysis.network
    shapes = _expected_shapes(analysis)
    if params is not None:
        _check_fit(shapes, params)
    root = torch.nn.Module()
    nodes = [n for n in net.nodes if not _is_input(n)]
    for node in sorted(nodes, key=lambda n: n.name.count(".")):  # outer names first
        info = analysis.layers[node.name]
        local = None if params is None else _local(params, node.name, info)
        _attach(root, node, NodeModule(node, info, local, device))
    graph = torch.fx.Graph()
    values: dict[str, torch.fx.Node] = {}
    for node in net.inputs:
        if keyword.iskeyword(node.name) or node.name == "self":
            raise NetspecError.at(
                f"input '{node.name}' is a Python keyword and cannot name a forward argument",
                node.span,
                hint="rename the input",
                exit_code=EXIT_SPEC,
            )
        values[node.name] = graph.placeholder(node.name)
    by_name = net._by_name
    for name in analysis.order:
        node = by_name[name]
        if not _is_input(node):
            args = tuple(values[i] for i in node.inputs)
            values[name] = graph.call_module(name, args)
    graph.output(tuple(values[o] for o in net.outputs))
    module = torch.fx.GraphModule(root, graph, class_name=net.name)
    if params is not None:
        load_params(module, params)
    return module


def _expected_shapes(analysis: Analysis) -> dict[str, Shape]:
    """Every parameter and state array's global name and shape."""
    return {
        f"{name}.{local}": shape
        for name, info in analysis.layers.items()
        for local, shape in (*info.param_shapes.items(), *info.state_shapes.items())
    }


def _local(params: Mapping[str, Array], name: str, info: LayerInfo) -> dict[str, Array]:
    return {local: params[f"{name}.{local}"] for local in (*info.param_shapes, *info.state_shapes)}


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The lowered module inside DistributedDataParallel or torch.compile's wrapper."""
    while True:
        if isinstance(module, torch.nn.parallel.DistributedDataParallel):
            module = module.module
        elif isinstance(getattr(module, "_orig_mod", None), torch.nn.Module):
            module = module._orig_mod  # type: ignore[assignment]
        else:
            return module


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by state-dict name (the tensors themselves, not copies)."""
    module = _unwrap(module)
    found: dict[str, torch.Tensor] = dict(module.named_parameters())
    found.update(module.named_buffers())
    return found


def load_params(module: torch.nn.Module, params: Mapping[str, Array]) -> None:
    """Set every parameter and buffer from netspec's arrays by name, in place (copies: training
    never writes into the arrays). Each tensor takes its array's dtype and keeps its device.

    The names must match exactly; a missing, unexpected or misshapen array is refused with
    its name before anything is changed. Load before wrapping in DistributedDataParallel.
    """
    tensors = _tensors(module)
    _check_fit({name: tuple(t.shape) for name, t in tensors.items()}, params)
    with torch.no_grad():
        for name, t in tensors.items():
            t.data = torch.tensor(np.asarray(params[name]), device=t.device)


def _check_fit(shapes: Mapping[str, Shape], params: Mapping[str, Array]) -> None:
    """Refuse arrays that do not match the network's names and shapes, naming them."""
    missing = sorted(set(shapes) - set(params))
    unexpected = sorted(set(params) - set(shapes))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_names(missing)}")
        if unexpected:
            near = suggest(unexpected[0], shapes)
            parts.append(f"unexpected {_names(unexpected)}" + (f" ({near})" if near else ""))
        raise NetspecError.at(
            f"the weights do not fit the network: {'; '.join(parts)}",
            hint="load weights saved for this network (weights.npz of a run of this spec)",
            exit_code=EXIT_RUNTIME,
        )
    for name, want in shapes.items():
        shape = tuple(np.shape(params[name]))
        if shape != tuple(want):
            raise NetspecError.at(
                f"weight '{name}' has shape {list(shape)}, the network needs {list(want)}",
                hint="load weights saved for this network (weights.npz of a run of this spec)",
                exit_code=EXIT_RUNTIME,
            )


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"'{n}'" for n in names[:shown]) + more


def params_of(module: torch.nn.Module) -> dict[str, Array]:
    """Every parameter and buffer as a NumPy array (a copy, on the CPU) by netspec's global name,
    sorted, in the tensor's dtype (bfloat16, which NumPy lacks, as float32). Takes the lowered
    module, or it wrapped in DistributedDataParallel or torch.compile."""
    out: dict[str, Array] = {}
    for name, t in sorted(_tensors(module).items()):
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        out[name] = t.cpu().numpy().copy()
    return out


def torch_code(analysis: Analysis) -> str:
    """The lowered module's forward as Python, after a comment naming each submodule's op and
    arrays: what `netspec compile --target torch` prints."""
    module = lower(analysis, device="meta")  # the code needs no weights
    modules = dict(module.named_modules())
    net = analysis.network
    head = [
        f"# {net.name}: a torch.fx.GraphModule (netspec.torch.lower), one submodule per layer;",
        "# its state_dict keys are netspec's weight names. Returns a tuple in this order: "
        + ", ".join(net.outputs),
        "#",
    ]
    width = max((len(n) for n in analysis.order), default=0)
    for name in analysis.order:
        sub = modules.get(name)
        if isinstance(sub, NodeModule):
            info = analysis.layers[name]
            shapes = {**info.param_shapes, **info.state_shapes}
            arrays = ", ".join(f"{k} {list(s)}" for k, s in shapes.items())
            head.append(f"#   {name:<{width}}  {call_form(sub.op)}  {arrays}".rstrip())
    return "\n".join(head) + "\n" + module.code.strip() + "\n"
