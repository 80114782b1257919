"""Other frameworks' names for netspec's, for hints: a PyTorch, Keras or Caffe habit gets the
netspec spelling instead of a spelling-distance guess (`out_channels` is nearer to
`in_channels` than to `filters`).

Plain data, read by the diagnostics only: a name here never changes what a spec means.
"""

from __future__ import annotations

from collections.abc import Collection

# torch.nn / Keras / Caffe layer names (compared case-insensitively) -> netspec op.
OPS: dict[str, str] = {
    "linear": "dense",
    "fc": "dense",
    "fullyconnected": "dense",
    "innerproduct": "dense",
    "conv2d": "conv2d",
    "convolution": "conv2d",
    "conv": "conv2d",
    "conv1d": "conv1d",
    "maxpool": "maxpool2d",
    "maxpooling2d": "maxpool2d",
    "maxpooling1d": "maxpool1d",
    "averagepooling2d": "avgpool2d",
    "averagepooling1d": "avgpool1d",
    "avgpool": "avgpool2d",
    "pooling": "maxpool2d",
    "adaptiveavgpool2d": "global_avgpool",
    "globalaveragepooling2d": "global_avgpool",
    "globalaveragepooling1d": "global_avgpool",
    "globalmaxpooling2d": "global_maxpool",
    "adaptivemaxpool2d": "global_maxpool",
    "batchnorm1d": "batchnorm",
    "batchnorm2d": "batchnorm",
    "batchnormalization": "batchnorm",
    "bn": "batchnorm",
    "localresponsenorm": "lrn",
    "zeropadding2d": "pad",
    "zeropad2d": "pad",
    "constantpad2d": "pad",
    "leakyrelu": "leaky_relu",
    "silu": "swish",
    "concatenate": "concat",
    "cat": "concat",
    "view": "reshape",
    "simplernn": "rnn",
    "eltwise": "add",
}

# Attribute names of those frameworks -> netspec's, by the netspec field they mean; a hint is
# given only when the op (or recipe part) really has that field.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "out_channels": ("filters",),
    "out_features": ("units",),
    "num_output": ("filters", "units"),
    "kernel_size": ("kernel",),
    "pool_size": ("kernel",),
    "strides": ("stride",),
    "use_bias": ("bias",),
    "bias_term": ("bias",),
    "rate": ("p",),
    "epsilon": ("eps",),
    "negative_slope": ("alpha",),
    "num_embeddings": ("vocab",),
    "input_dim": ("vocab",),
    "embedding_dim": ("dim",),
    "output_dim": ("dim",),
    "hidden_size": ("hidden",),
    "num_groups": ("groups",),
    "learning_rate": ("lr",),
    "beta_1": ("beta1",),
    "beta_2": ("beta2",),
    "decay": ("weight_decay",),
    "batch_size": ("batch",),
    "num_epochs": ("epochs",),
    "alpha": ("rho",),  # torch.optim.RMSprop's smoothing constant
}

# Attributes that other frameworks put on a layer and netspec writes as a layer of its own.
AS_LAYERS = {"activation": "an activation", "dropout": "dropout(p)"}


def op_hint(name: str, known: Collection[str]) -> str | None:
    """`linear` -> "netspec calls it 'dense'" when that op exists."""
    target = OPS.get(name.lower().replace("_", ""))
    if target is None or target == name or target not in known:
        return None
    return f"netspec calls it '{target}'"


def attribute_hint(
    owner: str, key: str, value: str | None, fields: Collection[str] | None
) -> str | None:
    """The netspec spelling of a foreign attribute name `key` of `owner` (an op or a recipe
    part); `fields`, when known, are the owner's, and a hint must name one of them."""
    if key in AS_LAYERS:
        layer = value if key == "activation" and value else AS_LAYERS[key]
        return f"activations and dropout are layers of their own: write `{owner}(...) {layer}`"
    for target in ATTRIBUTES.get(key, ()):
        if fields is None or target in fields:
            return f"netspec calls it '{target}'"
    return None
