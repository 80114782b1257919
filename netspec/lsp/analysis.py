"""One open document, analysed the way `netspec check` does, for every network it defines.

`analyse_document` never raises: every problem becomes a `Finding` located in the document
(one found in an imported file is shown at the `import` that brings it in, and remembers
where it really is). Besides the findings it keeps what the features need: the document's
AST, the program with its imports, and for every call of the text the layers each of its
expansions built (`Instance`), with their shapes, parameters and MACs.

The text analysed is the editor's: the document's own buffer, and the buffers of imported
files that are open too (`texts`); other imports are read from disk.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec import syntax
from netspec import tree as ast
from netspec.errors import Diagnostic, NetspecError, Severity, Span
from netspec.expand import CallTrace, expand
from netspec.graph import analyse
from netspec.ir import Analysis, LayerInfo, Network
from netspec.ops.base import Shape
from netspec.program import Program, load_program
from netspec.survey import check_unused_blocks
from netspec.values import evaluate

log = logging.getLogger(__name__)

INTERNAL = "internal error"  # how a finding from a bug in netspec starts
_IMPORT = re.compile(r'^[ \t]*import[ \t]+"([^"\n]*)"', re.MULTILINE)
_MAX_IMPORT_FILES = 500  # when tracing which import brought a file in


@dataclass(frozen=True)
class Finding:
    """A diagnostic placed in the document. `origin` is where it is when that is elsewhere
    (an imported file); then `span` is the import that brings that file in."""

    severity: Severity
    message: str
    span: Span
    hint: str | None = None
    origin: Span | None = None


@dataclass(frozen=True)
class Instance:
    """One expansion of a call of the text in one network: the layers it built."""

    network: Network
    analysis: Analysis
    trace: CallTrace

    @property
    def layers(self) -> list[LayerInfo]:
        nodes = self.network.nodes[self.trace.start : self.trace.end]
        return [info for n in nodes if (info := self.analysis.layers.get(n.name)) is not None]

    @property
    def output(self) -> LayerInfo | None:
        return self.analysis.layers.get(self.trace.output)

    @property
    def output_shape(self) -> Shape | None:
        info = self.output
        return None if info is None else info.output_shape

    @property
    def input_shapes(self) -> tuple[Shape, ...]:
        layers = self.layers
        return layers[0].input_shapes if layers else ()

    @property
    def params(self) -> int:
        return sum(info.params for info in self.layers)

    @property
    def state(self) -> int:
        return sum(info.state for info in self.layers)

    @property
    def macs(self) -> int:
        return sum(info.macs for info in self.layers)


@dataclass
class Document:
    """The analysis of one text. `module` is None when the text does not parse."""

    path: Path
    text: str
    module: ast.Module | None = None
    program: Program | None = None
    analyses: dict[str, Analysis] = field(default_factory=dict)  # by network name
    findings: list[Finding] = field(default_factory=list)
    instances: dict[Span, list[Instance]] = field(default_factory=dict)  # by call span
    consts: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return str(self.path)

    def instances_of(self, call: ast.Call) -> list[Instance]:
        return self.instances.get(call.span, [])

    def layer(self, name: str) -> LayerInfo | None:
        """A layer (or input) of any analysed network, by its full name."""
        for analysis in self.analyses.values():
            if (info := analysis.layers.get(name)) is not None:
                return info
        return None


def analyse_document(
    path: Path,
    text: str,
    texts: Mapping[Path, str] | None = None,
    *,
    allow_outside_imports: bool = False,
) -> Document:
    """Everything `check` reports about `text` (as the file `path`), and per-call facts."""
    doc = Document(path=path, text=text)
    try:
        _analyse(doc, texts, allow_outside_imports)
    except NetspecError as e:
        _add(doc, e.diagnostics, texts)
    except RecursionError:
        _add(doc, [Diagnostic(Severity.ERROR, "the file nests too deeply to process")], texts)
    except Exception as e:  # a bug in netspec: the editor keeps working and says so
        log.exception("analysis of %s failed", path)
        message = f"{INTERNAL}: {type(e).__name__}: {e} (a bug in netspec; please report it)"
        _add(doc, [Diagnostic(Severity.ERROR, message)], texts)
    return doc


def _analyse(doc: Document, texts: Mapping[Path, str] | None, allow_outside: bool) -> None:
    doc.module = syntax.parse(doc.text, doc.file)
    doc.program = program = load_program(doc.path, doc.text, allow_outside, texts)
    for const in program.consts.values():
        try:
            doc.consts[const.name] = evaluate(const.value, doc.consts)
        except NetspecError:
            break  # expansion reports it
    for name in program.main_networks:
        trace: list[CallTrace] = []
        try:
            net = expand(program, name, trace)
            analysis, diags = analyse(net)
        except NetspecError as e:
            _add(doc, e.diagnostics, texts, program.networks[name].name_span)
            continue
        except RecursionError:
            message = "the spec nests too deeply to expand"
            diag = Diagnostic(Severity.ERROR, message, program.networks[name].span)
            _add(doc, [diag], texts)
            continue
        doc.analyses[name] = analysis
        _add(doc, diags, texts, program.networks[name].name_span)
        for t in trace:
            doc.instances.setdefault(t.call.span, []).append(Instance(net, analysis, t))
    _add(doc, check_unused_blocks(program)[1], texts)  # as `check` does


def _add(
    doc: Document,
    diags: list[Diagnostic],
    texts: Mapping[Path, str] | None,
    fallback: Span | None = None,
) -> None:
    """Place diagnostics in the document: spanless ones at `fallback` (the network's name),
    those in other files at the import that brings the file in. Duplicates are dropped."""
    seen = {(f.severity, f.message, f.span) for f in doc.findings}
    here = doc.path.resolve()
    start = Span(file=doc.file, line=1, column=1, end_line=1, end_column=2)
    for d in diags:
        span, origin, message = d.span or fallback or start, None, d.message
        if Path(span.file).resolve() != here:
            origin = span
            imp = _import_of(doc, Path(span.file), texts)
            span = imp.span if imp is not None else start
            message = f"{_shown(origin, doc.path)}: {message}"
        key = (d.severity, message, span)
        if key not in seen:
            seen.add(key)
            doc.findings.append(Finding(d.severity, message, span, d.hint, origin))


def _shown(span: Span, base: Path) -> str:
    try:
        name = str(Path(span.file).resolve().relative_to(base.resolve().parent))
    except ValueError:
        name = span.file
    return f"{name}:{span.line}:{span.column}"


def _import_of(doc: Document, file: Path, texts: Mapping[Path, str] | None) -> ast.Import | None:
    """The document's `import` through which `file` is read (directly or transitively)."""
    if doc.module is None:
        return None
    target = file.resolve()
    base = doc.path.resolve().parent
    for item in doc.module.items:
        if not isinstance(item, ast.Import):
            continue
        if target in _reachable((base / item.path).resolve(), texts):
            return item
    return None


def _reachable(start: Path, texts: Mapping[Path, str] | None) -> set[Path]:
    """`start` and every file its imports name, transitively, read as leniently as possible
    (the files may not parse: that is often why this is asked)."""
    seen: set[Path] = set()
    todo = [start]
    while todo and len(seen) < _MAX_IMPORT_FILES:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = None if texts is None else texts.get(path)
        if text is None:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
        todo.extend((path.parent / m.group(1)).resolve() for m in _IMPORT.finditer(text))
    return seen
