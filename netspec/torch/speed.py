"""The torch engine's speed options: `--precision` (autocast; fp16 with a gradient scaler),
`--compile` (torch.compile of the lowered module) and a data set held on the training device
(`DeviceData`, so that a GPU run copies it once, not every batch)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from netspec.errors import EXIT_RUNTIME, EXIT_USAGE, NetspecError
from netspec.ops.base import Array

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# A data set is held on a GPU when it takes at most this share of its free memory.
RESIDENT_SHARE = 0.5


def autocast_dtype(precision: str, device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """The 16-bit type autocast computes in (None: fp32), or a clear refusal."""
    if precision not in PRECISIONS:
        raise NetspecError.at(
            f"unknown precision '{precision}'", hint="use fp32, bf16 or fp16", exit_code=EXIT_USAGE
        )
    amp = PRECISIONS[precision]
    if amp is not None and dtype == torch.float64:
        raise NetspecError.at(
            f"--precision {precision} computes in 16 bits; this run asks for float64",
            hint="use --precision fp32 with float64 (the reference arithmetic)",
            exit_code=EXIT_USAGE,
        )
    if amp is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise NetspecError.at(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support",
            hint="use --precision fp16 (with its gradient scaler) or fp32",
            exit_code=EXIT_USAGE,
        )
    return amp


class _Steps(torch.optim.Optimizer):
    """What torch.amp.GradScaler steps: netspec's own update (penalties, clipping, the shared
    optimizer) behind the torch.optim interface, over the same parameters."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__(params, {})
        self.apply: Callable[[float], None] | None = None

    def step(self, lr: float) -> None:  # type: ignore[override]
        assert self.apply is not None
        self.apply(lr)


class Mixed:
    """Autocast around the forward and, for fp16, the loss scaling around the backward: the
    gradients are unscaled before netspec's update, and a step whose scaled gradients
    overflowed is skipped (the scale then halves), as GradScaler does."""

    def __init__(
        self, precision: str, device: torch.device, dtype: torch.dtype, params: list[torch.Tensor]
    ) -> None:
        self.amp = autocast_dtype(precision, device, dtype)
        self.device_type = device.type
        fp16 = self.amp is torch.float16 and bool(params)
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.steps = _Steps(params) if fp16 else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.amp is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.amp):
            yield

    def backward_and_step(
        self, value: torch.Tensor, apply: Callable[[float], None], lr: float
    ) -> None:
        if self.scaler is None or self.steps is None:
            value.backward()  # type: ignore[no-untyped-call]
            apply(lr)
            return
        self.scaler.scale(value).backward()  # type: ignore[no-untyped-call]
        self.steps.apply = apply
        self.scaler.unscale_(self.steps)
        self.scaler.step(self.steps, lr)
        self.scaler.update()


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    return torch.compile(module)  # type: ignore[return-value]


def compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when it cannot compile (no C++ compiler, an unsupported op)."""
    import torch._dynamo.exc
    import torch._inductor.exc

    return (torch._dynamo.exc.TorchDynamoException, torch._inductor.exc.InvalidCxxCompiler)


def compile_failed(e: BaseException) -> NetspecError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return NetspecError.at(
        f"--compile: torch.compile could not compile the network ({type(e).__name__}: {first})",
        hint="drop --compile (the eager module trains the same), or install a C++ compiler "
        "(g++ or clang; torch.compile builds its CPU kernels with one; on CUDA it needs Triton)",
        exit_code=EXIT_RUNTIME,
    )


class DeviceData:
    """A data set's features as one tensor on the training device, in the dtype the network
    takes, converted and copied once; a batch is an index into it (only the indices travel).
    On the CPU the tensor shares the float32 array's memory."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, np.ndarray):
            index = torch.as_tensor(index, device=self.tensor.device)
        return self.tensor[index]


def fits(nbytes: int, free: int) -> bool:
    """Whether a data set of `nbytes` may stay on a device with `free` bytes free: half of it,
    so that the activations of a step still fit beside it."""
    return nbytes <= RESIDENT_SHARE * free


def resident(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """`x` as DeviceData on `device` (int64 ids stay int64), or `x` itself where it is not one
    array or does not fit the GPU's free memory (then each batch is copied, as before)."""
    if not isinstance(x, np.ndarray):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t if t.dtype == torch.int64 else t.to(dtype)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if not fits(t.numel() * t.element_size(), free):
            return x
    return DeviceData(t.to(device))


def as_array(t: torch.Tensor) -> Array:
    """A tensor as NumPy (bfloat16, which NumPy lacks, as float32)."""
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy()
