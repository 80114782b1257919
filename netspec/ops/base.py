"""The op contract: one frozen Pydantic class per operator holds everything about it.

An op's fields *are* its DSL attributes (declared once, bounds in their types). Its methods:

- ``infer_shape(inputs)``: per-sample shapes in (batch excluded), shape out; raises ShapeError
  naming the rule and the shapes;
- ``param_shapes`` / ``state_shapes``: trainable parameters and non-trainable state (running stats);
- ``macs``: multiply-accumulates per sample (1 MAC = one multiply + one add);
- ``warnings``: non-fatal findings (e.g. rows a window never covers);
- ``forward(xs, p, ctx) -> (y, cache)`` and ``backward(dy, cache, p) -> (dxs, dparams)``, stateless:
  batch-first arrays; ``p`` maps local parameter names to arrays owned by the executor;
- ``to_onnx(io)``: plain node descriptions (only ``netspec.onnx`` imports onnx);
- ``torch_forward(torch, xs, p, train)``: the forward pass on torch tensors, which autograd
  differentiates (only ``netspec.torch`` imports torch: the module is handed in);
- ``examples()``: valid instances with input shapes, walked by the contract test.

Layouts follow PyTorch/ONNX (conv weight ``(out, in/groups, *kernel)``, dense weight
``(out, in)``), so torch parity and ONNX export need no conversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from netspec.errors import ShapeError
from netspec.ops.init import Init

Shape = tuple[int, ...]
Array = npt.NDArray[Any]
Params = dict[str, Array]
Grads = dict[str, Array]


@dataclass
class Ctx:
    """Per-call execution context: training or inference, and the run's random generator."""

    train: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    # False when nothing upstream of the op is trainable (a network's first layer): backward
    # may then return None for its inputs and skip that work, as PyTorch's needs_input_grad.
    input_grad: bool = True
    # False when no backward pass will read this call's cache (inference, or a step nothing
    # differentiates through): forward may then skip what only its backward needs.
    backward: bool = True


@dataclass(frozen=True)
class OnnxNode:
    """A backend-neutral ONNX node description; netspec.onnx turns it into a NodeProto."""

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


class OpsetError(Exception):
    """Raised by `to_onnx` when the requested opset cannot express the op; says what it needs.

    The exporter reports it against the layer with a hint to raise --opset. Any other exception
    from a lowering is a bug in the op and is not dressed up as an opset limit.
    """


class OnnxIO(Protocol):
    """What the exporter offers an op while lowering it."""

    inputs: list[str]  # tensor names of the op's inputs
    output: str  # the tensor name the op must produce
    input_shapes: list[Shape]  # per-sample shapes, batch excluded
    output_shape: Shape
    opset: int

    def param(self, local: str) -> str:
        """Initializer name of one of this node's parameters or state arrays, as stored."""
        ...

    def derived(self, local: str, fn: Callable[[Params], Array]) -> str:
        """An initializer computed from this node's arrays (e.g. reordered LSTM gates)."""
        ...

    def const(self, hint: str, value: Array) -> str:
        """A constant initializer (shapes for Reshape, pads, slopes, ...)."""
        ...

    def tmp(self, hint: str) -> str:
        """A fresh intermediate tensor name."""
        ...


@dataclass(frozen=True)
class Workspace:
    """Float32 bytes an op holds besides its output, for the memory estimate (netspec.memory).

    `cache`: per sample, what its forward pass keeps until backward (the executor keeps it in
    eval mode too). `scratch`: per sample, its largest temporaries, forward or backward.
    `fixed`: temporaries that do not grow with the batch (a conv's window-matrix chunk).
    """

    cache: int
    scratch: int
    fixed: int = 0


@dataclass(frozen=True)
class Example:
    """A valid op instance with per-sample input shapes, for the contract test and docs."""

    op: Op
    inputs: tuple[Shape, ...]
    # Float ranges a test should draw inputs from, e.g. away from a kink at 0.
    low: float = -2.0
    high: float = 2.0


class Op(BaseModel):
    """Base of every operator. Subclasses declare ``op: Literal["name"] = "name"`` and fields."""

    # allow_inf_nan=False: a NaN or infinite attribute (`elu(alpha=1e309)`) is refused where it
    # is written; JSON would store it as null, and the IR could not be read back.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    op: str

    # Which attributes positional DSL arguments fill, in order: `conv2d(64, 3)`.
    positional: ClassVar[tuple[str, ...]] = ()
    # Number of tensor inputs; None means two or more (merges like add and concat).
    arity: ClassVar[int | None] = 1
    # Tensors beyond `arity` a call may name positionally, before its attributes: attention's
    # memory, `attention(x, memory, heads=4)` or, reading the previous output as x,
    # `attention(memory, heads=4)`. A name that is a constant or parameter stays a value.
    extra_inputs: ClassVar[int] = 0
    # Grouping for the README's op reference.
    category: ClassVar[str] = "layer"
    # The one-line description in the README's op table.
    summary: ClassVar[str] = ""
    # The op reads axis 0 as channels ([C, L] and the like: conv1d, pools, batchnorm). The
    # analysis warns where a [T, F] tensor (see `layout`) reaches such an op.
    channels_first: ClassVar[bool] = False
    # The op keeps its input's layout (activations, dropout, add): see `layout`.
    keeps_layout: ClassVar[bool] = False
    # The input dtype an op needs, when not float (embedding takes int64 indices).
    input_dtype: ClassVar[str] = "float32"
    # Read by the weight initialiser: a rectifier asks the layer feeding it for He/MSRA init,
    # and init-transparent ops (batchnorm, dropout) are looked through on the way.
    rectifier: ClassVar[bool] = False
    init_transparent: ClassVar[bool] = False
    # The initialiser this op's weights get when the user names none (embedding: normal(0, 1)).
    default_init: ClassVar[Init | None] = None
    # False for ops whose derivative is zero almost everywhere (step): no gradient check.
    differentiable: ClassVar[bool] = True
    # Draws from the run's generator in training (dropout's masks): an engine whose own random
    # numbers must follow the run's seed and resume (torch's) seeds them only for such nets.
    random: ClassVar[bool] = False
    # Read by the NumPy executor, which runs such an activation after the max pool it feeds,
    # on the pooled (smaller) tensor: f(max(x)) == max(f(x)) exactly, gradients and ties
    # included (relu: monotone and exact in floating point; not sigmoid, whose rounding ties
    # saturated inputs). takes_max marks the ops that keep window maxima (max pools).
    commutes_with_max: ClassVar[bool] = False
    takes_max: ClassVar[bool] = False

    # ---- analysis ----------------------------------------------------------------------------
    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        raise NotImplementedError

    def param_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {}

    def state_shapes(self, inputs: Sequence[Shape]) -> dict[str, Shape]:
        return {}

    def macs(self, inputs: Sequence[Shape], output: Shape) -> int:
        return 0

    def workspace(self, inputs: Sequence[Shape], output: Shape) -> Workspace:
        """What the op holds besides its output (see Workspace). The default assumes a cache
        as large as the inputs and temporaries of twice the inputs and output (backward's dx,
        and a product or mask per operand); ops that hold more say so."""
        io = (sum(numel(s) for s in inputs) + numel(output)) * FLOAT_BYTES
        return Workspace(cache=sum(numel(s) for s in inputs) * FLOAT_BYTES, scratch=2 * io)

    def warnings(self, inputs: Sequence[Shape]) -> list[str]:
        return []

    def layout(self, inputs: Sequence[Shape], layouts: Sequence[str | None]) -> str | None:
        """ "TF" when the output is [time, features] (an embedding's, a sequence RNN's), else
        None; ops that keep their input's layout pass it on."""
        if self.keeps_layout and layouts and all(lay == layouts[0] for lay in layouts):
            return layouts[0]
        return None

    def initial_state(self, name: str, shape: Shape) -> Array:
        """Starting value of a state array (running mean 0, running variance 1, ...)."""
        return np.zeros(shape, dtype=np.float32)

    def initial_param(self, name: str, shape: Shape) -> Array | None:
        """A fixed starting value for a parameter (PReLU slope 0.25), or None: the initialiser's."""
        return None

    def init_hint(self) -> Init | None:
        """The initialiser the user chose for this op's weights (`init=he`), if any."""
        return None

    # ---- NumPy -------------------------------------------------------------------------------
    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        raise NotImplementedError

    # ---- ONNX --------------------------------------------------------------------------------
    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        """Node descriptions producing ``io.output``; None means the output *is* input 0."""
        raise NotImplementedError

    # ---- PyTorch -----------------------------------------------------------------------------
    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        """The forward pass on batch-first torch tensors, as ``forward`` computes it; autograd
        gives the backward. ``torch`` is the torch module, handed in so that no op imports it;
        ``p`` holds this node's parameters and state by local name, and state (running
        statistics) is updated in place in training, as ``forward`` updates it."""
        raise NotImplementedError

    # ---- tests and docs ----------------------------------------------------------------------
    @classmethod
    def examples(cls) -> list[Example]:
        raise NotImplementedError

    @classmethod
    def kind(cls) -> str:
        default = cls.model_fields["op"].default
        assert isinstance(default, str), f"{cls.__name__}.op needs a Literal default"
        return default

    def attrs(self) -> dict[str, Any]:
        """The attributes, without the discriminator."""
        return self.model_dump(exclude={"op"})


# ---------------------------------------------------------------------------------------------
# Shared bases


def expect_rank(op: str, shape: Shape, ranks: Sequence[int], what: str) -> None:
    """Raise the standard error for an input of the wrong rank."""
    if len(shape) not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(
            f"expects a {want} input per sample ({what}), got {list(shape)}",
            hint="insert `flatten` before a dense layer" if op == "dense" else None,
        )


class Elementwise(Op):
    """An activation y = f(x): shape unchanged, backward dx = dy * f'(x, y)."""

    category: ClassVar[str] = "activation"
    onnx_op: ClassVar[str] = ""
    keeps_layout: ClassVar[bool] = True

    def infer_shape(self, inputs: Sequence[Shape]) -> Shape:
        return inputs[0]

    def f(self, x: Array) -> Array:
        raise NotImplementedError

    def df(self, x: Array, y: Array) -> Array:
        """dy/dx, given input and output (many derivatives are cheaper from y)."""
        raise NotImplementedError

    def forward(self, xs: Sequence[Array], p: Params, ctx: Ctx) -> tuple[Array, Any]:
        x = xs[0]
        y = self.f(x)
        return y, (x, y)

    def backward(self, dy: Array, cache: Any, p: Params) -> tuple[list[Array | None], Grads]:
        x, y = cache
        return [dy * self.df(x, y)], {}

    def onnx_attrs(self) -> dict[str, Any]:
        return {}

    def to_onnx(self, io: OnnxIO) -> list[OnnxNode] | None:
        return [OnnxNode(self.onnx_op, (io.inputs[0],), (io.output,), self.onnx_attrs())]

    def torch_f(self, torch: Any, x: Any) -> Any:
        """f on a torch tensor; autograd must give the same derivative as ``df``."""
        raise NotImplementedError

    def torch_forward(
        self, torch: Any, xs: Sequence[Any], p: Mapping[str, Any], train: bool
    ) -> Any:
        return self.torch_f(torch, xs[0])


def channel_sums(a: Array, b: Array | None = None) -> Array:
    """Per-channel sums of a (or of a * b) over (N, C, S) arrays: BLAS dot products, no temporary.

    For batchnorm's statistics and a conv's bias gradient. Measured on a ResNet-20 activation
    (32, 16, 32, 32): 0.03 ms against numpy's 0.07-0.10 ms for a.sum(axis=(0, 2)) and 0.11 ms
    for (a * b).sum(axis=(0, 2)); on LeNet's first conv output (64, 6, 784) 0.016 against 0.045.
    """
    n, c, s = a.shape
    if s < 16:  # features of a dense layer (s = 1): rows too short for a dot product to pay
        return (a if b is None else a * b).sum(axis=(0, 2))
    rows = np.ascontiguousarray(a).reshape(n * c, s)
    if b is None:
        sums = rows @ np.ones(s, dtype=a.dtype)  # one GEMV
    else:  # one dot product per (sample, channel) row
        sums = rows[:, None, :] @ np.ascontiguousarray(b).reshape(n * c, s, 1)
    return sums.reshape(n, c).sum(axis=0)


FLOAT_BYTES = 4  # the estimate counts float32, as training runs


def numel(shape: Shape) -> int:
    return math.prod(shape)
