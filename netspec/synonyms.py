"""Other frameworks' names (PyTorch, Keras, Caffe) for netspec's, so a habit gets the right hint:
`linear` -> dense, `out_channels` -> filters, `learning_rate` -> lr. Data only; lookups ignore
case and underscores (`Conv2D`, `conv2d`, `BatchNorm2d`)."""

from __future__ import annotations

from collections.abc import Iterable

# Op (and block-call) names. A value is a netspec op name.
OPS: dict[str, str] = {
    "linear": "dense",
    "fc": "dense",
    "fullyconnected": "dense",
    "innerproduct": "dense",  # Caffe
    "convolution": "conv2d",  # Caffe
    "conv": "conv2d",
    "convolution1d": "conv1d",
    "convolution2d": "conv2d",
    "maxpooling1d": "maxpool1d",
    "maxpooling2d": "maxpool2d",
    "averagepooling1d": "avgpool1d",
    "averagepooling2d": "avgpool2d",
    "avgpool": "avgpool2d",
    "maxpool": "maxpool2d",
    "pooling": "maxpool2d",  # Caffe's Pooling, MAX by default
    "globalaveragepooling1d": "global_avgpool",
    "globalaveragepooling2d": "global_avgpool",
    "globalmaxpooling1d": "global_maxpool",
    "globalmaxpooling2d": "global_maxpool",
    "adaptiveavgpool2d": "global_avgpool",
    "adaptiveavgpool1d": "global_avgpool",
    "adaptivemaxpool2d": "global_maxpool",
    "batchnormalization": "batchnorm",
    "batchnorm1d": "batchnorm",
    "batchnorm2d": "batchnorm",
    "localresponsenorm": "lrn",
    "localresponsenormalization": "lrn",
    "concatenate": "concat",
    "cat": "concat",
    "eltwise": "add",  # Caffe's Eltwise, SUM
    "sum": "add",
    "permute": "transpose",
    "view": "reshape",
    "zeropadding1d": "pad",
    "zeropadding2d": "pad",
    "zeropad2d": "pad",
    "constantpad2d": "pad",
    "leakyrelu": "leaky_relu",
    "silu": "swish",
    "simplernn": "rnn",
}

# Attribute names, whatever the op. A value is netspec's name for the same thing.
ATTRIBUTES: dict[str, str] = {
    "out_channels": "filters",
    "num_output": "filters",  # Caffe (dense: units)
    "out_features": "units",
    "kernel_size": "kernel",
    "pool_size": "kernel",
    "strides": "stride",
    "dilation_rate": "dilation",
    "use_bias": "bias",
    "bias_term": "bias",  # Caffe
    "rate": "p",
    "drop_rate": "p",
    "dropout_ratio": "p",  # Caffe
    "negative_slope": "alpha",
    "epsilon": "eps",
    "num_embeddings": "vocab",
    "input_dim": "vocab",
    "embedding_dim": "dim",
    "output_dim": "dim",
    "hidden_size": "hidden",
    "num_units": "hidden",
    "return_sequence": "return_sequences",
    "learning_rate": "lr",
    "base_lr": "lr",  # Caffe
    "kernel_initializer": "init",
    "dim": "axis",
}


def _key(name: str) -> str:
    return name.lower().replace("_", "")


_OPS = {_key(k): v for k, v in OPS.items()}
_ATTRIBUTES = {_key(k): v for k, v in ATTRIBUTES.items()}


def op_hint(name: str, known: Iterable[str]) -> str | None:
    """'did you mean ...' when `name` is another framework's name for a known op."""
    target = _OPS.get(_key(name))
    if target is None and _key(name) in {_key(k) for k in known}:
        target = next(k for k in known if _key(k) == _key(name))  # `Conv2D`, `LSTM`
    return f"did you mean '{target}'?" if target is not None and target in known else None


def attribute_hint(name: str, known: Iterable[str]) -> str | None:
    """'did you mean ...' when `name` is another framework's name for a known attribute."""
    target = _ATTRIBUTES.get(_key(name))
    known = list(known)
    if target is not None and target in known:
        return f"did you mean '{target}'?"
    return None
