"""Loading a program: the spec file and, transitively, its imports, parsed and indexed by name.

The limits that keep a hostile or mistaken spec from running the machine out of time or memory
live here too: the file size, the layers a network may expand to and how deep blocks nest.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec import syntax
from netspec import tree as ast
from netspec.errors import NetspecError, Span, suggest
from netspec.ops import OPS

MAX_NODES = 200_000  # a spec that expands past this is refused, not ground through
MAX_DEPTH = 50  # block nesting
MAX_SPEC_BYTES = 16 * 2**20  # a spec file; ResNet-1202 takes 2 KB


@contextmanager
def bulk() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a network is built or analysed: the
    objects made make no reference cycles, and the collections that hundreds of thousands of
    new objects set off took a third of the time of a 200,000-layer check."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Program:
    """Every definition reachable from the main file, by name."""

    main: str
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    networks: dict[str, ast.NetworkDef] = field(default_factory=dict)
    trains: dict[str, ast.TrainDef] = field(default_factory=dict)
    consts: dict[str, ast.ConstDef] = field(default_factory=dict)
    main_networks: list[str] = field(default_factory=list)
    main_blocks: list[str] = field(default_factory=list)  # the blocks the main file defines
    files: list[Path] = field(default_factory=list)  # the spec, then each import once


def _err(message: str, span: Span | None, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, span, hint)


def load_program(
    path: Path,
    text: str | None = None,
    allow_outside: bool = False,
    texts: Mapping[Path, str] | None = None,
) -> Program:
    """Parse `path` and, transitively, its imports. Import cycles and escapes are refused.

    `texts` holds file contents by resolved path that win over the disk (an editor's unsaved
    buffers of imported files)."""
    loader = _Loader(path, allow_outside, texts or {})
    loader.load(path, text, stack=[], is_main=True)
    return loader.program


class _Loader:
    def __init__(self, main: Path, allow_outside: bool, texts: Mapping[Path, str]) -> None:
        self.texts = texts
        self.program = Program(main=str(main))
        self.root = main.resolve().parent
        self.shown_root = main.parent  # the folder as the user named it, for messages
        self.allow_outside = allow_outside
        self.seen: set[Path] = set()

    def load(self, path: Path, text: str | None, stack: list[Path], is_main: bool) -> None:
        resolved = path.resolve()
        if text is None:
            text = self.texts.get(resolved)
        module = syntax.parse(_read(path) if text is None else text, str(path))
        stack = [*stack, resolved]
        self.seen.add(resolved)
        self.program.files.append(path)
        for item in module.items:
            if isinstance(item, ast.Import):
                self.follow(item, resolved, stack)
            else:
                self.register(item, is_main)

    def follow(self, item: ast.Import, importer: Path, stack: list[Path]) -> None:
        """Load an import: the path checked is the path read (both resolved, symlinks too)."""
        target = (importer.parent / item.path).resolve()
        inside = target.is_relative_to(self.root)
        if not self.allow_outside and not inside:
            raise _err(
                f"import of {item.path!r} leaves the project folder {self.root}",
                item.span,
                "keep imported files beside the spec, or pass --allow-outside-imports",
            )
        if target in stack:
            cycle = " -> ".join(p.name for p in [*stack[stack.index(target) :], target])
            raise _err(f"import cycle: {cycle}", item.span)
        if target in self.seen:
            return
        if not target.is_file():
            raise _err(f"imported file {item.path!r} does not exist", item.span)
        # Named beside the main spec as the user named it (specs/blocks.net), and it resolves
        # to `target` itself: what was checked is what is read.
        shown = self.shown_root / target.relative_to(self.root) if inside else target
        self.load(shown, None, stack, is_main=False)

    def register(self, item: ast.Item, is_main: bool) -> None:
        table: dict[str, Any]
        if isinstance(item, ast.BlockDef):
            if item.name in OPS:
                raise _err(
                    f"block '{item.name}' hides the built-in op of that name", item.name_span
                )
            table, name = self.program.blocks, item.name
            if is_main:
                self.program.main_blocks.append(item.name)
        elif isinstance(item, ast.NetworkDef):
            table, name = self.program.networks, item.name
            if is_main:
                self.program.main_networks.append(item.name)
        elif isinstance(item, ast.TrainDef):
            table, name = self.program.trains, item.network
        else:
            assert isinstance(item, ast.ConstDef)
            table, name = self.program.consts, item.name
        if name in table:
            raise _err(f"'{name}' is defined twice (first at {table[name].span})", item.span)
        table[name] = item  # type: ignore[assignment]  # each table holds its own kind


def _read(path: Path) -> str:
    """A spec file's text: a regular file of bounded size, in UTF-8."""
    if not path.exists():
        raise _err(f"no such file: {path}", None)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise _err(f"cannot read {path}: it is {what}", None)
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise _err(
            f"{path} is {size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,} (use blocks and "
            "repetition for big networks)",
            None,
        )
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _err(f"cannot read {path}: {e.strerror or e}", None) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise _err(
            f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x})",
            Span(file=str(path), line=line, column=col),
        ) from None


def choose_network(program: Program, name: str | None) -> ast.NetworkDef:
    """The network to build: by name; else the main file's trained one; else its last one."""
    if name is not None:
        if name not in program.networks:
            raise _err(
                f"no network named '{name}' in {program.main}",
                Span(file=program.main, line=1, column=1),
                suggest(name, program.networks)
                or f"networks: {', '.join(program.networks) or 'none'}",
            )
        return program.networks[name]
    if not program.main_networks:
        raise _err(
            f"{program.main} defines no network",
            Span(file=program.main, line=1, column=1),
            "write `network Name { input x: [...] ... }`",
        )
    trained = [n for n in program.main_networks if n in program.trains]
    return program.networks[(trained or program.main_networks)[-1]]
