"""Which ops are compared against PyTorch, registered where each comparison is written.

An op class's `has_torch_twin` promises such a comparison. `against_torch` records the op kinds
a test compares when its module is imported, so test_contract can check that the flags and
the tests agree both ways, and neither drifts when an op or a test is added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

TORCH_CHECKED: set[str] = set()

# Every module that holds torch comparisons; test_contract imports them to fill the registry.
MODULES = (
    "tests.ops.test_conv_pool",
    "tests.ops.test_activations_norm",
    "tests.ops.test_recurrent",
)


def against_torch(*kinds: str) -> Callable[[F], F]:
    """Mark a test as comparing these op kinds (forward and gradients) with PyTorch."""

    def mark(test: F) -> F:
        TORCH_CHECKED.update(kinds)
        return test

    return mark
