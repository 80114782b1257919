"""Weight initialiser choices as an attribute type: `dense(10, init=he)`, `init=normal(0.02)`.

The values live here (the IR must validate them); the sampling lives in netspec.initializers.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from netspec.callform import call_form

ALIASES = {
    "he": "he_normal",
    "msra": "he_normal",
    "he_normal": "he_normal",
    "msra_normal": "he_normal",
    "he_uniform": "he_uniform",
    "msra_uniform": "he_uniform",
    "glorot": "glorot_uniform",
    "xavier": "glorot_uniform",
    "glorot_uniform": "glorot_uniform",
    "xavier_uniform": "glorot_uniform",
    "glorot_normal": "glorot_normal",
    "xavier_normal": "glorot_normal",
    "normal": "normal",
    "uniform": "uniform",
    "zeros": "zeros",
    "constant": "constant",
}


class Init(BaseModel):
    """One initialiser: He/MSRA (before relu-family), Glorot/Xavier (before tanh/sigmoid), ..."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: Literal[
        "he_normal",
        "he_uniform",
        "glorot_uniform",
        "glorot_normal",
        "normal",
        "uniform",
        "zeros",
        "constant",
    ]
    std: float = Field(default=0.01, gt=0)
    low: float = -0.05
    high: float = 0.05
    value: float = 0.0

    positional: ClassVar[dict[str, tuple[str, ...]]] = {
        "normal": ("std",),
        "uniform": ("low", "high"),
        "constant": ("value",),
    }


def _known(name: str) -> None:
    if name not in ALIASES:
        known = sorted(ALIASES)
        # `choices` is for the front end's suggestion; the text is for people.
        raise PydanticCustomError(
            "unknown_initialiser",
            "unknown initialiser '{name}'; known: {known}",
            {"name": name, "known": ", ".join(known), "choices": known},
        )


InitName = Annotated[Init, call_form(Init.positional, ALIASES, _known)]
