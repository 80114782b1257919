"""`freeze = ["conv1", "layer1"]`: the layers a recipe keeps as they are, for every engine.

A name freezes the layer of that name, or every layer of a block instance (`layer1.0`) or of a
repetition (`layer1`, all of `layer1.0`, `layer1.1`, ...): the dotted prefixes of the layers'
hierarchical names. A frozen layer's parameters take no step: they get no gradient, no
optimizer state (so the checkpoint holds no slots for them), no weight decay or l1/l2 penalty,
and they are left out of clip_norm's global norm (as PyTorch leaves out parameters without a
gradient). A frozen layer that keeps running statistics (batchnorm) normalises by them in
training too and never updates them, as torchvision's FrozenBatchNorm2d: fine-tuning a head
on frozen features then sees the features the loaded model computed.
"""

from __future__ import annotations

from collections.abc import Iterable

from netspec.errors import EXIT_SPEC, NetspecError, suggest
from netspec.ir import Analysis, Network, Node


def _prefixes(node: Node) -> set[str]:
    parts = node.name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} | set(node.scope)


def freezable(nodes: Iterable[Node]) -> set[str]:
    """Every name `freeze` accepts: layers, block instances and repetitions."""
    names: set[str] = set()
    for node in nodes:
        names |= _prefixes(node)
    return names


def unknown_names(names: Iterable[str], nodes: Iterable[Node]) -> list[tuple[str, str | None]]:
    """The names that freeze nothing, each with the nearest known name as a hint."""
    known = freezable(nodes)
    return [(n, suggest(n, known)) for n in names if n not in known]


def frozen_layers(network: Network) -> frozenset[str]:
    """The layers the network's recipe freezes, by node name (an IR JSON may hold names that
    the spec's check never saw: refused here, as they would freeze nothing)."""
    given = () if network.train is None else network.train.freeze
    if not given:
        return frozenset()
    bad = unknown_names(given, network.nodes)
    if bad:
        name, hint = bad[0]
        raise NetspecError.at(
            f"freeze: network {network.name} has no layer or block named '{name}'",
            hint=hint,
            exit_code=EXIT_SPEC,
        )
    return _matched(network)


def _matched(network: Network) -> frozenset[str]:
    wanted = set(() if network.train is None else network.train.freeze)
    return frozenset(n.name for n in network.nodes if wanted and _prefixes(n) & wanted)


def frozen_arrays(analysis: Analysis) -> frozenset[str]:
    """Global names of the trainable arrays the recipe freezes (state arrays are never
    trained: see fixed_statistics)."""
    layers = frozen_layers(analysis.network)
    return frozenset(
        f"{name}.{local}"
        for name in layers
        if (info := analysis.layers.get(name)) is not None
        for local in info.param_shapes
    )


def fixed_statistics(analysis: Analysis) -> frozenset[str]:
    """Frozen layers that keep running statistics: they run as in inference while training."""
    return frozenset(
        name
        for name in frozen_layers(analysis.network)
        if (info := analysis.layers.get(name)) is not None and info.state_shapes
    )


def parameter_counts(analysis: Analysis) -> tuple[int, int]:
    """(trainable, frozen) parameters; running statistics are in neither. Names that match
    no layer freeze nothing here (the analysis reports them)."""
    layers = analysis.layers
    frozen = sum(layers[n].params for n in _matched(analysis.network) if n in layers)
    return analysis.trainable_params - frozen, frozen
