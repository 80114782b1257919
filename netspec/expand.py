"""AST -> IR: imports resolved, names bound, blocks and repetition expanded into primitive nodes.

Naming follows torchvision so weights read like a state dict: an unnamed call gets `<op>_<k>`
(k counts that op in its scope); `name = call` names the node `name`; a named statement with
several calls or a repetition names them `name.0`, `name.1`, ...; a block's nodes live under its
instance name: `layer3.2.conv1`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from netspec import syntax as ast
from netspec.errors import Diagnostic, NetspecError, Severity, Span, suggest
from netspec.ir import Network, Node
from netspec.ops import OPS
from netspec.ops.base import Op
from netspec.ops.io import Input
from netspec.recipe import TrainSpec

MAX_NODES = 200_000  # a spec that expands past this is refused, not ground through
MAX_DEPTH = 50  # block nesting
MAX_SPEC_BYTES = 16 * 2**20  # a spec file; ResNet-1202 takes 2 KB
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
}


@dataclass(frozen=True)
class Symbol:
    """A bare name with no binding: `padding=same`, `loss = cross_entropy`.

    It is a choice word when the attribute accepts it, else a misspelt name: `known` holds the
    constants and parameters in scope where it was written, for a suggestion.
    """

    name: str
    span: Span
    known: tuple[str, ...] = field(default=(), compare=False)


@dataclass
class Program:
    """Every definition reachable from the main file, by name."""

    main: str
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    networks: dict[str, ast.NetworkDef] = field(default_factory=dict)
    trains: dict[str, ast.TrainDef] = field(default_factory=dict)
    consts: dict[str, ast.ConstDef] = field(default_factory=dict)
    main_networks: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # the spec, then each import once


def _err(message: str, span: Span | None, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, span, hint)


# ---------------------------------------------------------------------------------------------
# Loading files and imports


def load_program(
    path: Path,
    text: str | None = None,
    allow_outside: bool = False,
    texts: Mapping[Path, str] | None = None,
) -> Program:
    """Parse `path` and, transitively, its imports. Import cycles and escapes are refused.

    `texts` holds file contents by resolved path that win over the disk (an editor's unsaved
    buffers of imported files)."""
    root = path.resolve().parent
    program = Program(main=str(path))
    _load(path, text, program, root, allow_outside, stack=[], is_main=True, seen=set(), texts=texts)
    return program


def _load(
    path: Path,
    text: str | None,
    program: Program,
    root: Path,
    allow_outside: bool,
    stack: list[Path],
    is_main: bool,
    seen: set[Path],
    texts: Mapping[Path, str] | None = None,
) -> None:
    resolved = path.resolve()
    if text is None and texts is not None:
        text = texts.get(resolved)
    if text is None:
        if not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise _err(f"cannot read {path}: it is {what}", None)
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise _err(
                f"{path} is {path.stat().st_size:,} bytes; a spec is at most "
                f"{MAX_SPEC_BYTES:,} (use blocks and repetition for big networks)",
                None,
            )
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise _err(f"cannot read {path}: {e.strerror or e}", None) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
            raise _err(
                f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x})",
                Span(file=str(path), line=line, column=col),
            ) from None
    module = ast.parse(text, str(path))
    stack = [*stack, resolved]
    seen.add(resolved)
    program.files.append(path)
    for item in module.items:
        if isinstance(item, ast.Import):
            target = (resolved.parent / item.path).resolve()
            if not allow_outside and not target.is_relative_to(root):
                raise _err(
                    f"import of {item.path!r} leaves the project folder {root}",
                    item.span,
                    "keep imported files beside the spec, or pass --allow-outside-imports",
                )
            if target in stack:
                cycle = " -> ".join(p.name for p in [*stack[stack.index(target) :], target])
                raise _err(f"import cycle: {cycle}", item.span)
            if target in seen:
                continue
            if not target.is_file():
                raise _err(f"imported file {item.path!r} does not exist", item.span)
            shown = Path(os.path.normpath(path.parent / item.path))
            _load(shown, None, program, root, allow_outside, stack, False, seen, texts)
            continue
        table: dict[str, Any]
        name: str
        if isinstance(item, ast.BlockDef):
            table, name = program.blocks, item.name  # type: ignore[assignment]
        elif isinstance(item, ast.NetworkDef):
            table, name = program.networks, item.name  # type: ignore[assignment]
            if is_main:
                program.main_networks.append(item.name)
        elif isinstance(item, ast.TrainDef):
            table, name = program.trains, item.network  # type: ignore[assignment]
        else:
            table, name = program.consts, item.name  # type: ignore[assignment]
        if name in table:
            raise _err(
                f"'{name}' is defined twice (first at {table[name].span})",
                item.span,
            )
        if isinstance(item, ast.BlockDef) and item.name in OPS:
            raise _err(f"block '{item.name}' hides the built-in op of that name", item.name_span)
        table[name] = item  # type: ignore[index,assignment]


# ---------------------------------------------------------------------------------------------
# Expressions


def _span_of(e: ast.Expr) -> Span:
    return e.span


def evaluate(e: ast.Expr, env: dict[str, Any]) -> Any:
    """Evaluate a constant expression. Unbound bare names become Symbols (`same`, `relu`)."""
    match e:
        case ast.Num(value=v) | ast.Str(value=v) | ast.Bool(value=v):
            return v
        case ast.Name(id=name, span=span):
            return env[name] if name in env else Symbol(name, span, tuple(env))
        case ast.ListExpr(items=items):
            return [evaluate(i, env) for i in items]
        case ast.Neg(operand=operand, span=span):
            v = evaluate(operand, env)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _err(f"cannot negate {_show(v)}", span)
            return -v
        case ast.BinOp(op=op, left=left, right=right, span=span):
            a, b = evaluate(left, env), evaluate(right, env)
            for v, side in ((a, left), (b, right)):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    hint = suggest(v.name, env) if isinstance(v, Symbol) else None
                    raise _err(f"arithmetic needs numbers, got {_show(v)}", side.span, hint)
            if op in ("/", "//", "%") and b == 0:
                raise _err("division by zero", span)
            ops = {
                "+": lambda: a + b,
                "-": lambda: a - b,
                "*": lambda: a * b,
                "/": lambda: a / b,
                "//": lambda: a // b,
                "%": lambda: a % b,
            }
            result = ops[op]()
            if isinstance(result, int) and abs(result) > ast.MAX_INT:
                raise _err(
                    f"{result} is too large; netspec allows at most {ast.MAX_INT:,}",
                    span,
                )
            return result
        case ast.FunCall(name=name, args=args):
            out: dict[str, Any] = {"name": name, "args": []}
            for a in args:
                value = evaluate(a.value, env)
                if a.key is None:
                    out["args"].append(value)
                else:
                    out[a.key] = value
            return out
    raise AssertionError(f"unhandled expression {e!r}")


def _freeze(v: Any) -> object:
    """A hashable twin of an attribute value (dicts and lists included), for memoising ops.

    Types are part of the key: 1, 1.0 and True are equal in Python but not as attributes.
    """
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return ("list", tuple(_freeze(x) for x in v))
    hash(v)
    return (type(v), v)


def _plain(v: Any, tuples: bool = False) -> Any:
    """Symbols become strings, for Pydantic; lists become tuples when `tuples` (strict mode)."""
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, list):
        items = [_plain(i, tuples) for i in v]
        return tuple(items) if tuples else items
    if isinstance(v, dict):
        return {k: _plain(x, tuples) for k, x in v.items()}
    return v


def _symbols(v: Any) -> list[Symbol]:
    """The bare names in a value, in order."""
    if isinstance(v, Symbol):
        return [v]
    if isinstance(v, list | tuple):
        return [s for i in v for s in _symbols(i)]
    if isinstance(v, dict):
        return [s for i in v.values() for s in _symbols(i)]
    return []


def _dsl(v: Any) -> str:
    """A value as the spec would write it: true, "text", [3, 3], adam(...)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_dsl(i) for i in v) + "]"
    if isinstance(v, dict) and "name" in v:
        return f"{v['name']}(...)"
    return repr(v)


def _kind(v: Any) -> str:
    for t, word in _KINDS:
        if isinstance(v, t):
            return word
    return type(v).__name__


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: bool is an int in Python
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "a list"),
    (tuple, "a list"),
    (dict, "a call"),
)


def _chain(names: list[str]) -> str:
    """A long block chain, shortened to its two ends."""
    if len(names) <= 6:
        return " -> ".join(names)
    return f"{' -> '.join(names[:3])} -> ... -> {' -> '.join(names[-2:])}"


def _show(v: Any) -> str:
    if isinstance(v, Symbol):
        return f"the unknown name '{v.name}'"
    return _dsl(v)


# ---------------------------------------------------------------------------------------------
# Validation errors -> spans


_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}
_TYPE_TAGS = {"int", "float", "str", "bool", "tuple", "list", "dict", "none"}


def _quoted(text: str) -> list[str]:
    """The names in Pydantic's "'same' or 'valid'" style lists."""
    return re.findall(r"'([^']*)'", text)


def _relevant(errors: list[ErrorDetails]) -> ErrorDetails:
    """One error per attribute: Pydantic reports one per union branch; keep the telling one."""
    if len(errors) == 1:
        return errors[0]
    got = errors[0].get("input")
    if isinstance(got, str):
        for e in errors:
            if e["type"] == "literal_error":
                return e
    for e in errors:
        if not e["type"].endswith(("_type", "_parsing")) and e["type"] != "literal_error":
            return e
    return errors[0]


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
}


def _accepted(errors: list[ErrorDetails]) -> str | None:
    """What an attribute accepts, from its type errors: 'an integer or a list of integers'.

    None when some error is about something else than the value's type (a bound, a rule).
    """
    words: list[str] = []
    for e in errors:
        if any(isinstance(x, int) for x in e["loc"]):  # an item of a list is wrong
            word = "a list of integers" if e["type"].startswith("int") else "a list"
        elif e["type"] in _TYPE_WORDS:
            word = _TYPE_WORDS[e["type"]]
        elif e["type"] in ("tuple_type", "list_type"):
            ints = any("int" in str(x) for x in e["loc"])
            word = "a list of integers" if ints else "a list"
        elif e["type"] == "literal_error":
            word = str(e.get("ctx", {}).get("expected", ""))
        else:
            return None
        if word not in words:
            words.append(word)
    if not words:
        return None
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _choices(errors: list[ErrorDetails]) -> list[str]:
    """The words an attribute accepts: a Literal's, or a validator's "...; known: a, b"."""
    words: list[str] = []
    for e in errors:
        if e["type"] == "literal_error":
            words += _quoted(str(e.get("ctx", {}).get("expected", "")))
        elif e["type"] == "value_error" and "known: " in e["msg"]:
            words += [w.strip(" '.") for w in e["msg"].rsplit("known: ", 1)[1].split(",")]
    return words


def _validation_error(
    err: ValidationError,
    what: str,
    spans: dict[str, Span],
    fallback: Span,
    known: list[str],
    layer: str | None = None,
    values: dict[str, Any] | None = None,
    raw: dict[str, Any] | None = None,
) -> NetspecError:
    """Pydantic's errors as located, plain-worded diagnostics, one per attribute.

    `values` are what Pydantic saw; `raw` the same before bare names became strings, so a
    misspelt constant (`dense(WIDHT)`) is told apart from a choice word (`padding=same`).
    """
    values = values or {}
    raw = raw or {}
    grouped: dict[str, list[ErrorDetails]] = {}
    nested: dict[str, list[str]] = {}
    for e in err.errors():
        loc = [str(x) for x in e["loc"]]
        # Discriminated unions put the op's tag first (('dense', 'units')): find the attribute.
        i = next((j for j, x in enumerate(loc) if x in spans or x in known), None)
        key = loc[i] if i is not None else (loc[0] if loc else "")
        rest = loc[i + 1 :] if i is not None else loc[1:]
        value = values.get(key)
        if rest and isinstance(value, dict) and rest[0] == value.get("name"):
            rest = rest[1:]  # the tag of a tagged value such as adam(...)
        rest = [x for x in rest if x.isidentifier() and x not in _TYPE_TAGS]
        grouped.setdefault(key, []).append(e)
        nested.setdefault(key, rest)
    extras = {
        key: suggest(key, known)
        for key, es in grouped.items()
        if es[0]["type"] == "extra_forbidden"
    }
    diags = []
    for key, errors in grouped.items():
        e = _relevant(errors)
        span = spans.get(key, fallback)
        path = ".".join([key, *nested[key]])
        got = e.get("input")
        hint = None
        ctx = e.get("ctx", {})
        accepted = _accepted(errors)
        choices = _choices(errors)
        words = {x.get("input") for x in errors if isinstance(x.get("input"), str)}
        symbol = next((x for x in _symbols(raw.get(key)) if x.name in words), None)
        if symbol is not None:
            # A bare word the attribute does not accept: a misspelt name, unless it is nearer
            # to one of the attribute's own choice words (`padding=sam`).
            near = difflib.get_close_matches(
                symbol.name, [*choices, *symbol.known, "true", "false"], n=1, cutoff=0.6
            )
            if not choices or (near and near[0] not in choices):
                hint = f"did you mean '{near[0]}'?" if near else None
                if hint is None and symbol.known:
                    hint = f"names defined here: {', '.join(symbol.known)}"
                elif hint is None:
                    hint = f"{path} takes {accepted or 'a value'}; no constant or parameter "
                    hint += "of that name is defined"
                msg = f"{what}: {path}: unknown name '{symbol.name}'"
                diags.append(Diagnostic(Severity.ERROR, msg, symbol.span, hint, layer))
                continue
        if e["type"] == "extra_forbidden":
            if nested[key]:
                msg = f"{what}: {key} has no attribute '{nested[key][-1]}'"
            else:
                msg = f"{what} has no attribute '{key}'"
                hint = extras[key] or f"known attributes: {', '.join(known) or 'none'}"
        elif e["type"] == "missing":
            if not nested[key] and any(h == f"did you mean '{key}'?" for h in extras.values()):
                continue  # `kernal=3` already explains the missing `kernel`
            msg = f"{what} needs '{path}'"
        elif e["type"] == "union_tag_invalid":
            tag, expected = ctx.get("tag"), str(ctx.get("expected_tags", ""))
            msg = f"{what}: unknown {key} '{tag}'"
            hint = suggest(str(tag), _quoted(expected)) or f"known: {expected}"
        elif e["type"] in _BOUNDS:
            sign, bound = _BOUNDS[e["type"]]
            msg = f"{what}: {path} must be {sign} {ctx.get(bound)}, got {_dsl(got)}"
        elif (
            accepted is not None
            and not isinstance(got, dict)
            and (e["type"] != "literal_error" or _numeral(str(got)))
        ):
            msg = f"{what}: {path} must be {accepted}, got {_dsl(got)}"
            bad = next((x for x in errors if isinstance(x["loc"][-1], int)), None)
            if bad is not None and isinstance(got, list | tuple):  # one item is wrong
                item = bad.get("input")
                hint = f"item {bad['loc'][-1] + 1} is {_dsl(item)} ({_kind(item)})"  # type: ignore[operator]
            else:
                msg += f" ({_kind(got)})"
            if isinstance(got, str) and _numeral(got) and "a string" not in accepted:
                hint = f"write {got} without quotes: quoted, it is a string"
            elif isinstance(got, float) and got.is_integer() and "an integer" in accepted:
                hint = f"write {int(got)}; to divide, `//` keeps an integer where `/` gives a float"
        elif e["type"] == "literal_error":
            expected = str(ctx.get("expected", ""))
            msg = f"{what}: {path} must be {expected}, got {got!r}"  # quoted as the choices are
            hint = suggest(str(got), _quoted(expected))
        else:
            text = str(e["msg"]).removeprefix("Value error, ")
            shown = f" (got {_dsl(got)})" if got is not None and not isinstance(got, dict) else ""
            msg = f"{what}: {path}: {text}{shown}"
            if isinstance(got, str) and choices:
                hint = suggest(got, choices)
        diags.append(Diagnostic(Severity.ERROR, msg, span, hint, layer))
    return NetspecError(diags)


def _numeral(text: str) -> bool:
    return re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*|true|false", text) is not None


def build_model(
    cls: type[BaseModel],
    raw: dict[str, Any],
    spans: dict[str, Span],
    fallback: Span,
    what: str,
    layer: str | None = None,
    strict: bool = False,
) -> Any:
    """Validate evaluated DSL values (bare names still Symbols) into `cls`.

    `strict` holds literals to their types, as op attributes need: `true` is not 1 unit, nor
    `"3"` 3 (an int still fills a float). Strict only here, on values the DSL wrote: IR JSON is
    read leniently, as its lists stand for tuples.
    """
    values = {k: _plain(v, tuples=strict) for k, v in raw.items()}
    try:
        # The context reaches nested validators (bidirectional's inner layer) as strict too.
        return cls.model_validate(values, strict=strict, context={"strict": strict})
    except ValidationError as err:
        known = [k for k in cls.model_fields if k not in ("op", "name", "network")]
        raise _validation_error(err, what, spans, fallback, known, layer, values, raw) from None


# ---------------------------------------------------------------------------------------------
# Networks


@dataclass
class _Scope:
    prefix: str  # '' at top level, 'layer3.2.' inside a block instance
    env: dict[str, Any]  # constants and block parameters
    tensors: dict[str, str]  # local tensor name -> node name
    path: tuple[str, ...]  # enclosing block instances
    current: str | None = None
    output: list[str] | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def auto_name(self, kind: str) -> str:
        k = self.counters.get(kind, 0) + 1
        self.counters[kind] = k
        return f"{kind}_{k}"


@dataclass(frozen=True)
class CallTrace:
    """What one call of a chain built (each repetition is its own): the nodes
    `nodes[start:end]` of the network and its output tensor. For editors: shapes per line."""

    call: ast.Call
    output: str
    start: int
    end: int


class _Expander:
    def __init__(self, program: Program, trace: list[CallTrace] | None = None) -> None:
        self.program = program
        self.trace = trace
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.block_stack: list[str] = []
        self.ops: dict[tuple[type[Op], object], Op] = {}
        self.consts = self._consts()

    def _consts(self) -> dict[str, Any]:
        env: dict[str, Any] = {}
        for c in self.program.consts.values():
            env[c.name] = evaluate(c.value, env)
        return env

    # nodes ------------------------------------------------------------------------------------
    def add(self, node: Node) -> str:
        if node.name in self.names:
            raise _err(f"layer name '{node.name}' is used twice", node.span)
        if len(self.nodes) >= MAX_NODES:
            raise _err(
                f"the network expands to more than {MAX_NODES:,} layers; refusing to build it",
                node.span,
                "lower a repetition count",
            )
        self.names.add(node.name)
        self.nodes.append(node)
        return node.name

    # statements -------------------------------------------------------------------------------
    def body(self, stmts: tuple[ast.Stmt, ...], scope: _Scope, in_block: bool) -> None:
        for stmt in stmts:
            match stmt:
                case ast.InputStmt():
                    if in_block:
                        raise _err(
                            "`input` belongs in a network; a block's input is `in`", stmt.span
                        )
                    self.input(stmt, scope)
                case ast.OutputStmt(names=names):
                    outs = [self.tensor(n, scope) for n in names]
                    scope.output = [*(scope.output or []), *outs]
                case ast.Assign(target=target, chain=chain, target_span=tspan):
                    if target in scope.tensors:
                        raise _err(
                            f"tensor '{target}' is already defined",
                            tspan,
                            "choose a new name: tensors are assigned once",
                        )
                    out = self.chain(chain, scope, target)
                    scope.tensors[target] = out
                    scope.current = out
                case ast.Chain():
                    scope.current = self.chain(stmt, scope, None)

    def input(self, stmt: ast.InputStmt, scope: _Scope) -> None:
        shape = evaluate(stmt.shape, scope.env)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise _err(
                f"input shape must be a list of integers, got {_plain(shape)}", stmt.shape.span
            )
        values: dict[str, Any] = {"shape": tuple(shape)}
        spans = {"shape": stmt.shape.span}
        if stmt.dtype is not None:
            values["dtype"] = stmt.dtype.id
            spans["dtype"] = stmt.dtype.span
        op = build_model(
            Input, values, spans, stmt.span, f"input '{stmt.name}'", stmt.name, strict=True
        )
        if stmt.name in scope.tensors:
            raise _err(f"tensor '{stmt.name}' is already defined", stmt.span)
        scope.tensors[stmt.name] = self.add(Node(name=stmt.name, op=op, span=stmt.span))
        scope.current = stmt.name

    def tensor(self, name: ast.Name, scope: _Scope) -> str:
        if name.id in scope.tensors:
            return scope.tensors[name.id]
        hint = suggest(name.id, scope.tensors)
        if hint is None and name.id in self.program.blocks | OPS:
            hint = f"'{name.id}' is an op; here a tensor name is expected"
        raise _err(f"unknown tensor '{name.id}'", name.span, hint)

    def chain(self, chain: ast.Chain, scope: _Scope, target: str | None) -> str:
        if chain.source is not None:
            current = self.tensor(chain.source, scope)
        elif scope.current is not None:
            current = scope.current
        else:
            current = ""  # only a merge with explicit inputs can start here
        instances = []
        for call in chain.calls:
            count = 1
            if call.repeat is not None:
                count = evaluate(call.repeat, scope.env)
                if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                    raise _err(
                        f"a repetition count must be an integer >= 1, got {_show(count)}",
                        call.repeat.span,
                    )
            instances.extend([call] * count)
        single = len(instances) == 1
        for i, call in enumerate(instances):
            local = None if target is None else target if single else f"{target}.{i}"
            start = len(self.nodes)
            current = self.call(call, scope, current, local)
            if self.trace is not None:
                self.trace.append(CallTrace(call, current, start, len(self.nodes)))
        return current

    # calls ------------------------------------------------------------------------------------
    def call(self, call: ast.Call, scope: _Scope, current: str, local: str | None) -> str:
        if call.name in self.program.blocks:
            return self.block(call, scope, current, local)
        if call.name not in OPS or call.name == "input":
            known = [k for k in OPS if k != "input"] + list(self.program.blocks)
            hint = suggest(call.name, known)
            if call.name == "input":
                hint = "declare inputs with `input NAME: [shape]`"
            if call.name in self.program.networks:
                hint = f"'{call.name}' is a network; only blocks can be used as layers"
            raise _err(f"unknown op or block '{call.name}'", call.name_span, hint)
        cls = OPS[call.name]
        name = scope.prefix + (local if local is not None else scope.auto_name(call.name))
        values: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        inputs: list[str] = []
        positional = list(cls.positional)
        for arg in call.args:
            if arg.key is None and cls.arity is None:  # merges take tensors positionally
                if not isinstance(arg.value, ast.Name):
                    raise _err(f"{call.name} takes tensor names, e.g. {call.name}(a, b)", arg.span)
                inputs.append(self.tensor(arg.value, scope))
                continue
            if arg.key is None:
                if not positional:
                    taken = ", ".join(cls.positional) or "no positional values"
                    raise _err(
                        f"too many positional values for {call.name} (it takes {taken})",
                        arg.span,
                        "name the attribute: key=value",
                    )
                key = positional.pop(0)
            else:
                key = arg.key
            if key in values or key == "op":
                raise _err(f"{call.name}: '{key}' is given twice", arg.span)
            values[key] = evaluate(arg.value, scope.env)
            spans[key] = arg.span
        if cls.arity is None:
            if len(inputs) == 1 and inputs[0] == current:
                raise _err(
                    f"{call.name}({call.args[0].value.id}) would combine "  # type: ignore[union-attr]
                    f"'{inputs[0]}' with itself: it is also the previous statement's output",
                    call.span,
                    "name the other branch and write both inputs, e.g. add(main, shortcut)",
                )
            if len(inputs) < 2:
                if not current:
                    raise _err(f"{call.name} needs two or more tensors", call.span)
                inputs.insert(0, current)
            if len(inputs) < 2:
                raise _err(
                    f"{call.name} needs two or more tensors, e.g. {call.name}(a, b)", call.span
                )
        else:
            if not current:
                raise _err(
                    f"'{call.name}' has no input: nothing comes before it",
                    call.span,
                    "declare `input x: [...]` first, or write `x -> ...`",
                )
            inputs = [current]
        op = self.op(cls, values, spans, call.span, f"{call.name} '{name}'", name)
        return self.add(
            Node(name=name, op=op, inputs=tuple(inputs), span=call.span, scope=scope.path)
        )

    def op(
        self,
        cls: type[Op],
        values: dict[str, Any],
        spans: dict[str, Span],
        span: Span,
        what: str,
        layer: str,
    ) -> Op:
        """A validated op; identical attribute sets share one frozen instance.

        A deep network repeats a few layer shapes thousands of times (ResNet-1202: 1,200
        convolutions of 6 kinds), so validating each only once halves expansion time.
        """
        try:
            key = (cls, _freeze(_plain(values)))
        except TypeError:  # an unhashable value: validation will say what is wrong with it
            return build_model(cls, values, spans, span, what, layer, strict=True)  # type: ignore[no-any-return]
        if key not in self.ops:
            self.ops[key] = build_model(cls, values, spans, span, what, layer, strict=True)
        return self.ops[key]

    def block(self, call: ast.Call, scope: _Scope, current: str, local: str | None) -> str:
        block = self.program.blocks[call.name]
        if call.name in self.block_stack:
            cycle = self.block_stack[self.block_stack.index(call.name) :]
            raise _err(
                f"block '{call.name}' instantiates itself (via {' -> '.join(cycle)})",
                call.span,
            )
        if len(self.block_stack) >= MAX_DEPTH:
            raise _err(
                f"block '{call.name}' would nest blocks {len(self.block_stack) + 1} deep; "
                f"netspec allows at most {MAX_DEPTH}",
                call.span,
                f"the chain: {_chain(self.block_stack)} -> {call.name}",
            )
        env = dict(self.consts)
        params = {p.name: p for p in block.params}
        order = list(params)
        given: dict[str, tuple[Any, Span]] = {}
        for arg in call.args:
            if arg.key is None:
                if not order:
                    raise _err(f"too many values for block {call.name}", arg.span)
                key = order.pop(0)
            else:
                key = arg.key
                if key not in params:
                    raise _err(
                        f"block {call.name} has no parameter '{key}'",
                        arg.span,
                        suggest(key, params),
                    )
                if key in order:
                    order.remove(key)
            if key in given:
                raise _err(f"block {call.name}: '{key}' is given twice", arg.span)
            given[key] = (evaluate(arg.value, scope.env), arg.span)
        for p in block.params:
            if p.name in given:
                value, span = given[p.name]
            elif p.default is not None:
                value, span = evaluate(p.default, env), p.span
            else:
                raise _err(f"block {call.name} needs a value for '{p.name}'", call.span)
            if p.type is not None:
                allowed = PARAM_TYPES.get(p.type.id)
                if allowed is None:
                    raise _err(
                        f"unknown parameter type '{p.type.id}'",
                        p.type.span,
                        suggest(p.type.id, PARAM_TYPES),
                    )
                if (isinstance(value, bool) and p.type.id != "bool") or not isinstance(
                    value, allowed
                ):
                    raise _err(
                        f"block {call.name}: '{p.name}' must be {p.type.id}, got {_show(value)}",
                        value.span if isinstance(value, Symbol) else span,
                        suggest(value.name, value.known) if isinstance(value, Symbol) else None,
                    )
                if p.type.id == "float":
                    value = float(value)  # type: ignore[arg-type]
            env[p.name] = value
        name = scope.prefix + (local if local is not None else scope.auto_name(call.name.lower()))
        inner = _Scope(
            prefix=name + ".",
            env=env,
            tensors={"in": current} if current else {},
            path=(*scope.path, name),
            current=current or None,
        )
        self.block_stack.append(call.name)
        try:
            self.body(block.body, inner, in_block=True)
        finally:
            self.block_stack.pop()
        if inner.output:
            if len(inner.output) > 1:
                raise _err(
                    f"block {call.name} declares {len(inner.output)} outputs; a block "
                    "used as a layer has one",
                    block.span,
                )
            return inner.output[0]
        if inner.current is None or (inner.current == current and not block.body):
            raise _err(f"block {call.name} is empty", block.span)
        return inner.current

    # networks ---------------------------------------------------------------------------------
    def network(self, net: ast.NetworkDef) -> tuple[str, ...]:
        scope = _Scope(prefix="", env=dict(self.consts), tensors={}, path=())
        self.body(net.body, scope, in_block=False)
        if not any(n.op.op == "input" for n in self.nodes):
            raise _err(
                f"network {net.name} has no input",
                net.name_span,
                "declare one, e.g. `input x: [1, 28, 28]`",
            )
        if scope.output:
            return tuple(scope.output)
        assert scope.current is not None
        return (scope.current,)


def _train(program: Program, name: str, consts: dict[str, Any]) -> TrainSpec | None:
    tdef = program.trains.get(name)
    if tdef is None:
        return None
    values: dict[str, Any] = {"network": name}
    spans: dict[str, Span] = {}
    base = Path(tdef.span.file).resolve().parent
    for s in tdef.settings:
        if s.key in values:
            raise _err(f"train: '{s.key}' is set twice", s.key_span)
        if s.key not in TrainSpec.KEYS:
            raise _err(
                f"train has no setting '{s.key}'",
                s.key_span,
                suggest(s.key, TrainSpec.KEYS) or f"known: {', '.join(TrainSpec.KEYS)}",
            )
        value = evaluate(s.value, consts)
        if s.key in ("data", "val_data"):
            value = _resolve_data(_plain(value), base)
        values[s.key] = value
        spans[s.key] = s.value.span
    spec: TrainSpec = build_model(TrainSpec, values, spans, tdef.span, "train", strict=True)
    return spec


def _resolve_data(value: Any, base: Path) -> Any:
    """Make data paths relative to the spec file, as a user expects."""

    def fix(p: Any) -> Any:
        return str(base / p) if isinstance(p, str) and p and not Path(p).is_absolute() else p

    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        out = dict(value)
        out["args"] = [fix(a) if i == 0 else a for i, a in enumerate(out.get("args", []))]
        for key in ("path", "labels"):
            if key in out:
                out[key] = fix(out[key])
        if out.get("name") in ("npy", "idx"):
            out["args"] = [fix(a) for a in out["args"]]
            if "x" in out:
                out["x"] = fix(out["x"])
        return out
    return value


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


def expand(
    program: Program, network: str | None = None, trace: list[CallTrace] | None = None
) -> Network:
    """Build the IR of one network of the program; `trace`, when given, receives a CallTrace
    per call expanded (also when expansion fails part way)."""
    net = choose_network(program, network)
    for t in program.trains.values():
        if t.network not in program.networks:
            raise _err(
                f"train section for unknown network '{t.network}'",
                t.name_span,
                suggest(t.network, program.networks),
            )
    try:
        ex = _Expander(program, trace)
        outputs = ex.network(net)
        train = _train(program, net.name, ex.consts)
    except RecursionError:
        raise _err("the spec nests too deeply to expand", net.span) from None
    return Network(
        name=net.name,
        nodes=tuple(ex.nodes),
        outputs=outputs,
        train=train,
        source=program.main,
        labels=None if train is None else train.labels,
    )


def iter_calls(stmts: tuple[ast.Stmt, ...]) -> Iterator[ast.Call]:
    for s in stmts:
        if isinstance(s, ast.Assign):
            yield from s.chain.calls
        elif isinstance(s, ast.Chain):
            yield from s.calls
