"""Learning-rate schedules as pure functions of a (fractional) epoch.

`epoch` is step / steps_per_epoch, so a schedule can change the rate inside an epoch. A warm-up
of `w` epochs multiplies the schedule's value by epoch / w until epoch reaches w: the rate grows
linearly from 0 and then joins the schedule, whose own clock is not shifted (a cosine still ends
at `total_epochs`).
"""

from __future__ import annotations

import math

from netspec import recipe


def factor(spec: recipe.Schedule, epoch: float, total_epochs: int) -> float:
    """The schedule's multiplier of the base rate at `epoch`, before warm-up."""
    match spec:
        case recipe.Constant():
            return 1.0
        case recipe.StepDecay():
            return spec.gamma ** math.floor(epoch / spec.every)
        case recipe.Exponential():
            return spec.gamma**epoch
        case recipe.LinearDecay():
            # eps_k = (1 - k/tau) eps_0 + (k/tau) eps_tau, constant after tau (Goodfellow 8.3.1).
            tau = spec.tau if spec.tau is not None else float(total_epochs)
            a = min(epoch / tau, 1.0)
            return (1 - a) + a * spec.final
        case recipe.Cosine():
            a = min(epoch / total_epochs, 1.0)
            return spec.final + (1 - spec.final) * 0.5 * (1 + math.cos(math.pi * a))
    raise AssertionError(f"unhandled schedule {spec.name}")


def learning_rate(spec: recipe.Schedule, base_lr: float, epoch: float, total_epochs: int) -> float:
    """The learning rate at a fractional epoch, warm-up included."""
    lr = base_lr * factor(spec, epoch, total_epochs)
    if spec.warmup > 0 and epoch < spec.warmup:
        lr *= epoch / spec.warmup
    return lr
