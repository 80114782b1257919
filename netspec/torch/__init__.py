"""The PyTorch back end: a checked network as a `torch.fx.GraphModule`.

The only package that imports torch; everything else reaches it lazily (`netspec compile
--target torch`), so `netspec check` never pays for loading it. Each op lowers itself
(`Op.torch_forward`, handed the torch module); this package only wires the nodes together and
converts netspec's weight arrays to and from the module's tensors.

    from netspec import api
    from netspec.initializers import init_params
    from netspec.torch import lower, params_of

    analysis = api.check(api.load("examples/digits_cnn.net"))
    model = lower(analysis, init_params(analysis, np.random.default_rng(0)))
    (logits,) = model(torch.zeros(4, 1, 8, 8))  # a tuple in network.outputs order
"""

from __future__ import annotations

from netspec.errors import EXIT_RUNTIME, NetspecError

TORCH_HINT = "install the torch extra: pip install 'netspec[torch]'"

try:
    import torch  # noqa: F401  (a missing torch is one message, not a traceback)
except ImportError as e:
    raise NetspecError.at(
        f"netspec's torch back end needs PyTorch, which cannot be imported ({e})",
        hint=TORCH_HINT,
        exit_code=EXIT_RUNTIME,
    ) from None

from netspec.torch.lower import NodeModule, load_params, lower, params_of, torch_code  # noqa: E402

__all__ = ["TORCH_HINT", "NodeModule", "load_params", "lower", "params_of", "torch_code"]
