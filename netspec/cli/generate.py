"""`sample`: text from a trained causal language model (specs/char_gpt.net)."""

from __future__ import annotations

import argparse

from netspec.cli.args import (
    Command,
    non_negative_int,
    positive_float,
    spec_arguments,
)
from netspec.errors import printable


def _arguments(p: argparse.ArgumentParser) -> None:
    spec_arguments(p)
    p.add_argument("--weights", required=True, metavar="W", help="a weights.npz or its run folder")
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--length", type=non_negative_int, default=200, help="characters to add")
    p.add_argument(
        "--temperature", type=positive_float, default=1.0, help="below 1: surer, above: wilder"
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--vocab",
        metavar="FILE.npz",
        help="the code points of token ids 0..V-1 (default: the recipe data's `vocab`)",
    )


def run_sample(args: argparse.Namespace) -> int:
    from netspec import api

    net = api.load(args.file, args.network, allow_outside_imports=args.allow_outside_imports)
    text = api.sample(
        api.check(net),
        args.weights,
        args.prompt,
        length=args.length,
        temperature=args.temperature,
        seed=args.seed,
        vocab=args.vocab,
    )
    # The characters come from a data file: shown, never interpreted by the terminal.
    print("\n".join(printable(line) for line in text.split("\n")))
    return 0


SAMPLE = Command(
    "sample",
    "generate text with a trained causal language model",
    _arguments,
    run_sample,
    description="Continue --prompt with --length characters sampled from a causal language "
    "model's next-character scores (a [T] int64 input, a [T, V] output), mapping ids to "
    "characters by the vocabulary stored with its data.",
)
