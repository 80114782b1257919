"""The `train { ... }` section as validated data. The engine executes it; nothing here runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from netspec.callform import call_form
from netspec.losses import LOSS_NAMES


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# ---- data -----------------------------------------------------------------------------------


class DataSpec(_Model):
    """Where the examples come from: `"digits.npz"`, `csv("x.csv", y="label")`,
    `idx("images.idx", "labels.idx")` or `npy("x.npy", "y.npy")`."""

    name: Literal["auto", "npz", "npy", "csv", "idx"] = "auto"
    path: str = ""  # the one file of npz/csv; npy and idx name two files: x and labels
    x: str = "x"  # array name in an .npz; the images file for idx; features file for npy
    y: str | int = "y"  # array name in an .npz; label column (name or index) in a CSV
    labels: str | None = None  # idx / npy: the labels file
    normalize: Literal["none", "standard", "minmax", "scale255"] = "none"

    @model_validator(mode="after")
    def _files_given(self) -> DataSpec:
        if self.name in ("npy", "idx"):
            if self.labels is None or self.x in ("", "x"):
                raise ValueError(f'{self.name}(...) needs two files: {self.name}("x", "labels")')
        elif not self.path:
            raise ValueError("needs a file path")
        return self


def _data(v: Any) -> Any:
    if isinstance(v, str):
        return {"name": "auto", "path": v}
    return v


DataArg = Annotated[
    DataSpec,
    call_form(
        {
            "auto": ("path",),
            "npz": ("path",),
            "npy": ("x", "labels"),
            "csv": ("path",),
            "idx": ("x", "labels"),
        }
    ),
    BeforeValidator(_data),
]

# ---- optimizers: the textbook defaults ------------------------------------------------------


class _Opt(_Model):
    lr: float = Field(default=0.01, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)  # coupled L2, added to the gradient

    # The per-parameter state the optimizer keeps, by name: a checkpoint stores it as
    # `optimizer/<slot>.<parameter>`, and every engine keeps these names, so a run resumes on
    # either engine (and a resume with another optimizer is refused by them).
    slots: ClassVar[tuple[str, ...]] = ()


class BGD(_Opt):
    """Full-batch gradient descent: one step per epoch over the whole training set."""

    name: Literal["bgd"] = "bgd"


class SGD(_Opt):
    name: Literal["sgd"] = "sgd"


class Momentum(_Opt):
    name: Literal["momentum"] = "momentum"
    slots: ClassVar[tuple[str, ...]] = ("v",)
    momentum: float = Field(default=0.9, ge=0, lt=1)


class Nesterov(_Opt):
    name: Literal["nesterov"] = "nesterov"
    slots: ClassVar[tuple[str, ...]] = ("v",)
    momentum: float = Field(default=0.9, ge=0, lt=1)


class AdaGrad(_Opt):
    name: Literal["adagrad"] = "adagrad"
    slots: ClassVar[tuple[str, ...]] = ("r",)
    eps: float = Field(default=1e-7, gt=0)


class RMSProp(_Opt):
    name: Literal["rmsprop"] = "rmsprop"
    slots: ClassVar[tuple[str, ...]] = ("r", "v")
    lr: float = Field(default=0.001, gt=0)
    rho: float = Field(default=0.9, gt=0, lt=1)
    eps: float = Field(default=1e-6, gt=0)
    momentum: float = Field(default=0.0, ge=0, lt=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> RMSProp:
        if self.nesterov and self.momentum == 0:
            raise ValueError("rmsprop(nesterov=true) needs momentum > 0, e.g. momentum=0.9")
        return self


class Adam(_Opt):
    name: Literal["adam"] = "adam"
    slots: ClassVar[tuple[str, ...]] = ("m", "v")
    lr: float = Field(default=0.001, gt=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.999, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter)."""

    name: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: float = Field(default=0.01, ge=0)


Optimizer = Annotated[
    BGD | SGD | Momentum | Nesterov | AdaGrad | RMSProp | Adam | AdamW,
    Field(discriminator="name"),
    call_form(
        {
            k: ("lr",)
            for k in ("bgd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
        }
    ),
]

# ---- learning-rate schedules ------------------------------------------------------------------


class _Sched(_Model):
    warmup: float = Field(default=0, ge=0)  # epochs of linear warm-up from 0 before the schedule


class Constant(_Sched):
    name: Literal["constant"] = "constant"


class StepDecay(_Sched):
    """lr * gamma ** floor(epoch / every)."""

    name: Literal["step"] = "step"
    every: int = Field(default=10, ge=1)
    gamma: float = Field(default=0.1, gt=0, le=1)


class Exponential(_Sched):
    """lr * gamma ** epoch."""

    name: Literal["exponential"] = "exponential"
    gamma: float = Field(default=0.95, gt=0, le=1)


class LinearDecay(_Sched):
    """eps_k = (1 - k/tau) eps_0 + (k/tau) eps_tau, then eps_tau; eps_tau = final * eps_0."""

    name: Literal["linear"] = "linear"
    tau: float | None = Field(default=None, gt=0)  # epochs; default: the whole run
    final: float = Field(default=0.01, ge=0, le=1)


class Cosine(_Sched):
    name: Literal["cosine"] = "cosine"
    final: float = Field(default=0.0, ge=0, le=1)  # fraction of lr reached at the end


Schedule = Annotated[
    Constant | StepDecay | Exponential | LinearDecay | Cosine,
    Field(discriminator="name"),
    call_form({"step": ("every", "gamma"), "exponential": ("gamma",), "linear": ("tau",)}),
]

# ---- early stopping and metrics ---------------------------------------------------------------


class EarlyStopping(_Model):
    name: Literal["early_stopping"] = "early_stopping"
    monitor: str = "val_loss"
    patience: int = Field(default=5, ge=0)
    min_delta: float = Field(default=0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best: bool = True


EarlyStoppingArg = Annotated[EarlyStopping, call_form({"early_stopping": ("patience",)})]

MetricName = Literal[
    "accuracy", "top_k", "precision", "recall", "f1", "confusion", "mse", "mae", "r2", "perplexity"
]


class Metric(_Model):
    name: MetricName
    k: int = Field(default=5, ge=1)  # top_k only


MetricArg = Annotated[Metric, call_form({"top_k": ("k",)})]

if TYPE_CHECKING:
    LossName = str
else:  # the names of netspec.losses.LOSSES: a loss is declared there, once
    LossName = Literal[LOSS_NAMES]


class TrainSpec(_Model):
    """Everything `netspec train` needs besides the network."""

    KEYS: ClassVar[tuple[str, ...]] = ()  # filled below, for suggestions

    network: str
    data: DataArg | None = None
    val_data: DataArg | None = None
    loss: LossName = "cross_entropy"
    # A network with several outputs: one loss each, in `output` order (default: `loss` for
    # every one), and the weights of their sum (default: 1 each).
    losses: tuple[LossName, ...] | None = None
    # The class label that counts for nothing in cross_entropy and the metrics (padding, a
    # prompt), as PyTorch's: -100 by default, `ignore_index = 0` for a padding id 0.
    ignore_index: int = -100
    loss_weights: tuple[Annotated[float, Field(ge=0)], ...] | None = None
    optimizer: Optimizer = Field(default_factory=lambda: SGD())
    schedule: Schedule = Field(default_factory=lambda: Constant())
    batch: int = Field(default=32, ge=1)
    epochs: int = Field(default=10, ge=1)
    validation: float = Field(default=0.0, ge=0, lt=1)  # fraction held out when no val_data
    shuffle: bool = True
    l1: float = Field(default=0.0, ge=0)
    l2: float = Field(default=0.0, ge=0)
    clip_norm: float | None = Field(default=None, gt=0)
    early_stopping: EarlyStoppingArg | None = None
    metrics: tuple[MetricArg, ...] = ()
    labels: tuple[str, ...] | None = None  # class names, index by index (shown by predict)
    # `inputs`: the (normalised) features are the targets, as an autoencoder learns; the data's
    # labels are then not trained on.
    targets: Literal["labels", "inputs"] = "labels"
    # Layers or blocks kept as they are (fine-tuning): see netspec/freezing.py.
    freeze: tuple[str, ...] = ()
    seed: int = 0
    perceptron_rule: bool = False  # train `step` layers by Rosenblatt's rule (see engine docs)

    @model_validator(mode="before")
    @classmethod
    def _one_loss_or_a_list(cls, data: Any) -> Any:
        # `losses` given: `loss` is its first (what export and predict read for one output).
        given = data.get("losses") if isinstance(data, dict) else None
        if isinstance(given, list | tuple) and given:
            if "loss" in data and data["loss"] != given[0]:
                raise ValueError("give `loss` (every output's) or `losses` (one each), not both")
            data = {**data, "loss": given[0]}
        return data

    def output_losses(self, outputs: tuple[str, ...]) -> dict[str, tuple[str, float]]:
        """Each output's loss name and weight (lengths are checked against the network by
        the analysis; a shorter list here leaves the rest to `loss`, weight 1)."""
        names = self.losses or ()
        weights = self.loss_weights or ()
        return {
            out: (
                names[i] if i < len(names) else self.loss,
                weights[i] if i < len(weights) else 1.0,
            )
            for i, out in enumerate(outputs)
        }


TrainSpec.KEYS = tuple(k for k in TrainSpec.model_fields if k != "network")
