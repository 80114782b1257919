"""Printing: diagnostics on stderr, the layer table, numbers people read."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from netspec.errors import Diagnostic, Severity, printable, render
from netspec.freezing import parameter_counts
from netspec.ir import Analysis

if TYPE_CHECKING:
    from netspec.api import FileCheck


def err(text: str) -> None:
    print(text, file=sys.stderr)


def note_torch_counters(ignored: Sequence[str]) -> None:
    """Say which PyTorch `num_batches_tracked` counters a weights file held and netspec left."""
    if ignored:
        shown = ", ".join(printable(n) for n in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        err(
            f"note: ignored {len(ignored)} num_batches_tracked array(s) ({shown}): PyTorch's "
            "batchnorm step counters; netspec's batchnorm uses its momentum and keeps none"
        )


MAX_SHOWN = 20  # errors shown, and warnings: the first ones say what to fix first


def report(diags: Sequence[Diagnostic]) -> None:
    """Every diagnostic, rendered with its source line and caret, then the counts; past
    MAX_SHOWN errors (or warnings) the rest are counted, not shown."""
    shown = {Severity.ERROR: 0, Severity.WARNING: 0}
    for d in diags:
        shown[d.severity] += 1
        if shown[d.severity] <= MAX_SHOWN:
            err(render(d))
    errors, warnings = shown[Severity.ERROR], shown[Severity.WARNING]
    hidden = [
        f"{n - MAX_SHOWN} more {word}(s)"
        for n, word in ((errors, "error"), (warnings, "warning"))
        if n > MAX_SHOWN
    ]
    if hidden:
        err(f"... and {' and '.join(hidden)}, not shown")
    if errors or warnings:
        err(f"{errors} error(s), {warnings} warning(s)")


def human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{suffix}{unit}" if suffix else f"{n:g}{unit}"
        n /= 1000
    return f"{n:.3g}P{unit}"


def size(n: float) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {suffix}" if suffix != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def check_json(analysis: Analysis, diags: list[Diagnostic], batch: int) -> dict[str, Any]:
    """`check --json`: totals, every layer, every diagnostic."""
    return {
        "network": analysis.network.name,
        "valid": not any(d.severity is Severity.ERROR for d in diags),
        "total_params": analysis.total_params,
        "trainable_params": parameter_counts(analysis)[0],
        "frozen_params": parameter_counts(analysis)[1],
        "non_trainable_params": analysis.state_params,
        "param_bytes": analysis.total_params * 4,
        "macs": analysis.macs,
        "flops": 2 * analysis.macs,
        "batch": batch,
        "activation_bytes": analysis.activation_bytes * batch,
        "layers": [
            {
                "name": info.name,
                "op": info.op,
                "input_shapes": [list(s) for s in info.input_shapes],
                "output_shape": None if info.output_shape is None else list(info.output_shape),
                "params": info.params,
                "non_trainable_params": info.state,
                "macs": info.macs,
                "failed": info.failed,
            }
            for name in analysis.order
            if (info := analysis.layers.get(name)) is not None
        ],
        "diagnostics": [d.to_json() for d in diags],
    }


# A table longer than TABLE_LIMIT rows shows its first and last TABLE_ENDS rows and its
# failing ones (unless --all): 200,000 rows are unreadable, and cost seconds to print.
TABLE_LIMIT = 1000
TABLE_ENDS = 50


def _table_rows(analysis: Analysis, full: bool) -> list[str | int]:
    """The names of the layers to show, in order, and the count of each run left out."""
    names = [n for n in analysis.order if n in analysis.layers]
    if full or len(names) <= TABLE_LIMIT:
        return list(names)
    failing = [i for i, n in enumerate(names) if analysis.layers[n].failed][:MAX_SHOWN]
    keep = {*range(TABLE_ENDS), *range(len(names) - TABLE_ENDS, len(names)), *failing}
    out: list[str | int] = []
    for i, name in enumerate(names):
        if i in keep:
            out.append(name)
        elif out and isinstance(out[-1], int):
            out[-1] += 1
        else:
            out.append(1)
    return out


def print_table(analysis: Analysis, batch: int, failed: bool, full: bool = False) -> None:
    """The layer table as aligned plain text: a rich Table costs seconds for ResNet-1202."""
    rows: list[tuple[str, ...] | int] = [("layer", "op", "output shape", "params", "MACs")]
    for name in _table_rows(analysis, full):
        if isinstance(name, int):
            rows.append(name)
            continue
        info = analysis.layers[name]
        shape = "FAILED" if info.output_shape is None else str(list(info.output_shape))
        params = f"{info.params:,}" + (f" (+{info.state:,})" if info.state else "")
        rows.append((printable(name), info.op, shape, params, f"{info.macs:,}"))
    cells = [r for r in rows if not isinstance(r, int)]
    widths = [max(len(r[i]) for r in cells) for i in range(5)]
    lines = [f"network {printable(analysis.network.name)}"]  # IR JSON names are any text
    for i, r in enumerate(rows):
        if isinstance(r, int):
            lines.append(f"  ... {r:,} more layer(s) (--all shows every one) ...")
            continue
        lines.append(
            f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  "
            f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}".rstrip()
        )
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    lines += ["the layers after a failure were not checked"] if failed else _totals(analysis, batch)
    sys.stdout.write("\n".join(lines) + "\n")


def _totals(analysis: Analysis, batch: int) -> list[str]:
    state = analysis.state_params
    trainable, frozen = parameter_counts(analysis)
    return [
        f"parameters: {trainable:,} trainable"
        + (
            f", {frozen:,} frozen by the recipe ({size(analysis.trainable_params * 4)} "
            "as float32 together)"
            if frozen
            else f" ({size(trainable * 4)} as float32)"
        )
        + (f", {state:,} non-trainable (running statistics, not in that count)" if state else ""),
        f"compute:    {human(analysis.macs)} MACs per sample "
        f"({human(2 * analysis.macs)} FLOPs; 1 MAC = one multiply-accumulate)",
        f"memory:     {size(analysis.activation_bytes * batch)} of activations for batch "
        f"{batch} (forward, float32)",
    ]


def _names(kind: str, names: Sequence[str]) -> str:
    listed = f" ({', '.join(printable(n) for n in names)})" if names else ""
    return f"{len(names)} {kind}{'' if len(names) == 1 else 's'}{listed}"


def print_checked(checked: FileCheck) -> None:
    """What `check` covered, when a file holds more than one network or any block: the
    blocks no network uses had their ops and attributes checked, not their shapes."""
    networks = [n.name for n in checked.networks]
    if len(networks) == 1 and not checked.blocks:
        return
    lines = [f"checked {_names('network', networks)} and {_names('block', checked.blocks)}"]
    if checked.unused:
        needs = [
            f"{printable(b)} has no default for {', '.join(checked.needs[b])}"
            for b in checked.unused
            if checked.needs[b]
        ]
        lines.append(
            "  no network uses "
            + ", ".join(printable(b) for b in checked.unused)
            + ": their ops and attributes were checked, not their shapes (which need an input"
            + (f"; {'; '.join(needs)})" if needs else ")")
        )
    sys.stdout.write("\n".join(lines) + "\n")


def file_json(checked: FileCheck, batch: int) -> dict[str, Any]:
    """`check --json` of a whole file: the default network's keys as for one network (when
    it expanded), each network's under `networks`, and every diagnostic of the file."""
    by_name = {
        n.name: check_json(n.analysis, n.diagnostics, batch)
        for n in checked.networks
        if n.analysis is not None
    }
    diags = checked.diagnostics
    out: dict[str, Any] = dict(by_name.get(checked.default or "", {}))
    out["valid"] = not any(d.severity is Severity.ERROR for d in diags)
    out["networks"] = by_name
    out["blocks"] = {b: {"used": b not in checked.unused} for b in checked.blocks}
    out["diagnostics"] = [d.to_json() for d in diags]
    return out
