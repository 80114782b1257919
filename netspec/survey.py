"""A whole file checked: every network its main file defines and every block, as `netspec
check` reports it. `compile`, `train` and `export` build one network (`expand`); `check`
promises that nothing in the file is left unchecked, and says what was checked.

A block that a network uses is checked in each instance, shapes included. One that no
network uses is expanded on its own (`check_block`): its ops, nested blocks and attributes
with its parameters' defaults; its shapes need an input shape, which only a network gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.errors import Diagnostic, NetspecError, Severity
from netspec.expand import check_block, expand, iter_calls
from netspec.graph import analyse
from netspec.ir import Analysis
from netspec.program import Program, choose_network


@dataclass(frozen=True)
class NetworkCheck:
    """One network: its analysis (None when it did not expand) and what was found in it."""

    name: str
    analysis: Analysis | None
    diagnostics: list[Diagnostic]

    @property
    def failed(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)


@dataclass(frozen=True)
class FileCheck:
    """What `check` learned about a file: each network, each block of the main file."""

    networks: list[NetworkCheck]
    default: str | None  # the network compile and train build when none is named
    blocks: list[str]  # every block of the main file, in source order
    unused: list[str]  # those no network uses: checked on their own, their shapes not
    needs: dict[str, list[str]] = field(default_factory=dict)  # unused -> params without default
    block_diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic, each once (a file-wide error is found by every network)."""
        found = [d for n in self.networks for d in n.diagnostics] + self.block_diagnostics
        return list(dict.fromkeys(found))


def check_program(program: Program) -> FileCheck:
    """Check every network of the main file and every block; raises only when the file
    defines neither (as `expand` does)."""
    if not program.main_networks and not program.main_blocks:
        choose_network(program, None)  # raises: the file defines no network
    networks = [_network(program, name) for name in program.main_networks]
    unused, diags = check_unused_blocks(program)
    needs = {
        name: [p.name for p in program.blocks[name].params if p.default is None] for name in unused
    }
    default = choose_network(program, None).name if program.main_networks else None
    return FileCheck(networks, default, list(program.main_blocks), unused, needs, diags)


def check_unused_blocks(program: Program) -> tuple[list[str], list[Diagnostic]]:
    """The main file's blocks that no network uses, each checked on its own (or within
    another such block that uses it), and what was found in them."""
    used = _calls(program, program.main_networks)
    unused = [b for b in program.main_blocks if b not in used]
    diags: list[Diagnostic] = []
    for name in _roots(program, unused):
        try:
            check_block(program, name)
        except NetspecError as e:
            diags += e.diagnostics
    return unused, diags


def _network(program: Program, name: str) -> NetworkCheck:
    try:
        analysis, diags = analyse(expand(program, name))
    except NetspecError as e:
        return NetworkCheck(name, None, e.diagnostics)
    except RecursionError:
        span = program.networks[name].span
        message = "the spec nests too deeply to expand"
        return NetworkCheck(name, None, [Diagnostic(Severity.ERROR, message, span)])
    return NetworkCheck(name, analysis, diags)


def _calls(program: Program, names: list[str]) -> set[str]:
    """The blocks that the bodies of `names` (networks or blocks) reach, transitively."""
    todo = [
        c.name
        for n in names
        for c in iter_calls((program.networks.get(n) or program.blocks[n]).body)
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in program.blocks and name not in seen:
            seen.add(name)
            todo.extend(c.name for c in iter_calls(program.blocks[name].body))
    return seen


def _roots(program: Program, unused: list[str]) -> list[str]:
    """The unused blocks to check on their own: those no other unused block reaches (the
    others are checked in their expansion), and one of each group that only reach each other."""
    inner = {c for b in unused for c in _calls(program, [b]) if c != b}
    roots = [b for b in unused if b not in inner]
    covered = _calls(program, roots) | set(roots)
    for name in unused:
        if name not in covered:
            roots.append(name)
            covered |= _calls(program, [name]) | {name}
    return roots
