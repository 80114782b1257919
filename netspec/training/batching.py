"""An epoch's mini-batches: the training split gathered once per epoch in the epoch's order.

Each epoch draws one permutation of the training samples (`rng.permutation`, so a run's random
stream is what it always was) and gathers the features and the targets in that order into two
arrays allocated once for the run (`np.take(..., out=)`); every batch is then a slice of them,
a view, and the targets in the order the batches ran (the training metrics') are the second
array itself. Gathering per batch instead cost two indexing calls a step, each a few
microseconds of Python and NumPy overhead against steps of 0.1-0.2 ms on the smallest examples;
a buffer per batch saved nothing (the allocator already reuses a freed batch's memory,
engine/allocator.py).

Memory: the two arrays are one more copy of the training split, held for the run (none when
the epoch keeps the arrays' order, `shuffle = false`; the targets are gathered per epoch
instead where they are as large as the features, an autoencoder's). The
--max-memory estimate (memory.training) counts the data at least twice (as read, and split or
normalised) and only one copy, the split, outlives loading, so a run stays within what it was
checked against. Data the engine holds itself (torch's `resident` features on a device) and
named arrays (a network of several inputs or outputs) are indexed per batch, as before.

The arrays are rewritten at the start of the next epoch: a step's inputs and the epoch's
targets must not be kept past the epoch (the loop scores them before it draws the next one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from netspec.ops.base import Array

# Targets up to this many bytes are always held gathered (labels, regression values).
HELD_TARGETS = 1 << 20


class Batches:
    """The batches of every epoch of a run, of `size` samples (the last may be shorter)."""

    def __init__(self, x: Any, y: Any, size: int) -> None:
        self.x, self.y, self.size = x, y, size
        self.n = len(x)
        self.slices = [slice(i, min(i + size, self.n)) for i in range(0, self.n, size)]
        plain = isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
        # Allocated at the first epoch: a run that fails before it holds no copy.
        self.gathered = plain
        self.bx: Array | None = None
        self.by: Array | None = None

    def __len__(self) -> int:
        return len(self.slices)

    def epoch(self, rng: np.random.Generator | None) -> tuple[Iterator[tuple[Any, Any]], Any]:
        """The epoch's (features, targets) batches, and all its targets in their order."""
        if rng is None:  # the arrays' own order: every batch is a view, nothing is copied
            return ((self.x[s], self.y[s]) for s in self.slices), self.y
        order = rng.permutation(self.n)
        if not self.gathered:
            return ((self.x[order[s]], self.y[order[s]]) for s in self.slices), self.y[order]
        if self.bx is None:
            self.bx = np.empty(self.x.shape, self.x.dtype)  # C order: each batch contiguous
            # Large targets about the features' size (an autoencoder's, `targets = inputs`)
            # would make a second held copy of the split: those are gathered per epoch.
            if self.y.nbytes <= max(self.x.nbytes // 4, HELD_TARGETS):
                self.by = np.empty(self.y.shape, self.y.dtype)
        # mode="clip": numpy buffers `out` under the default "raise"; a permutation is in range.
        np.take(self.x, order, axis=0, out=self.bx, mode="clip")
        if self.by is None:
            by = self.y[order]
        else:
            by = np.take(self.y, order, axis=0, out=self.by, mode="clip")
        bx = self.bx
        return ((bx[s], by[s]) for s in self.slices), by
