"""AST -> IR: names bound, blocks and repetition expanded into primitive nodes.

Naming follows torchvision so weights read like a state dict: an unnamed call gets `<op>_<k>`
(k counts that op in its scope); `name = call` names the node `name`; a named statement with
several calls or a repetition names them `name.0`, `name.1`, ...; a block's nodes live under its
instance name: `layer3.2.conv1`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from netspec import synonyms
from netspec import tree as ast
from netspec.errors import Diagnostic, NetspecError, Severity, Span, suggest
from netspec.ir import Network, Node
from netspec.ops import OPS
from netspec.ops.base import Op
from netspec.ops.io import Input
from netspec.program import MAX_DEPTH, MAX_NODES, Program, bulk, choose_network, load_program
from netspec.recipes import train_section
from netspec.validation import build_model
from netspec.values import Symbol, Unknown, evaluate, freeze, plain, show, symbols, unknown

T = TypeVar("T")

__all__ = ["CallTrace", "Program", "check_block", "expand", "iter_calls", "load_program"]

PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "str": (str,),
    "list": (list,),
}


def _err(message: str, span: Span | None, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, span, hint)


def _chain(names: list[str]) -> str:
    """A long block chain, shortened to its two ends."""
    if len(names) <= 6:
        return " -> ".join(names)
    return f"{' -> '.join(names[:3])} -> ... -> {' -> '.join(names[-2:])}"


# What a statement that failed leaves for the ones after it to read: they are still checked
# (an error in a call says nothing of the next call's name or attributes), the network is not
# analysed. It names no layer, so nothing reports it as undefined.
FAILED = "\x00failed"


class _AbortError(Exception):
    """An error that stops the whole expansion (the layer limit), not only its statement."""

    def __init__(self, error: NetspecError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Scope:
    prefix: str  # '' at top level, 'layer3.2.' inside a block instance
    env: dict[str, Any]  # constants and block parameters
    tensors: dict[str, str]  # local tensor name -> node name
    path: tuple[str, ...]  # enclosing block instances
    calls: tuple[Span, ...] = ()  # the calls that made them, outermost first
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


def _names_tensor(value: Any, env: dict[str, Any], tensors: dict[str, str]) -> bool:
    """A positional argument that names a tensor (not a constant or a block parameter)."""
    return isinstance(value, ast.Name) and value.id not in env and value.id in tensors


class _Expander:
    def __init__(self, program: Program, trace: list[CallTrace] | None = None) -> None:
        self.trace = trace
        self.program = program
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.block_stack: list[str] = []
        self.errors: list[Diagnostic] = []  # every independent error, in the order found
        # A call's op and a block call's bound parameters, by (call, scope values): the
        # repetitions of a call (`dense(3) * 100000`, `Basic(64) * 200`) evaluate the same
        # arguments in the same scope, so each is done once. The objects are kept, so their
        # ids stay theirs.
        self.memo: dict[tuple[int, int], tuple[ast.Call, dict[str, Any], Any]] = {}
        self.ops: dict[tuple[type[Op], object], Op] = {}
        self.first: dict[int, Node] = {}  # by its op's id: the first node of each op
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
            raise _AbortError(
                _err(
                    f"the network expands to more than {MAX_NODES:,} layers; refusing to build it",
                    node.span,
                    "lower a repetition count",
                )
            )
        self.names.add(node.name)
        self.nodes.append(node)
        return node.name

    # statements -------------------------------------------------------------------------------
    def body(self, stmts: tuple[ast.Stmt, ...], scope: _Scope, in_block: bool) -> None:
        """Every statement, each checked whatever became of the ones before it."""
        for stmt in stmts:
            try:
                self.statement(stmt, scope, in_block)
            except NetspecError as e:
                self.errors += e.diagnostics
                if isinstance(stmt, ast.InputStmt):  # what reads it is checked, not reported
                    scope.tensors.setdefault(stmt.name, FAILED)
                    scope.current = FAILED

    def statement(self, stmt: ast.Stmt, scope: _Scope, in_block: bool) -> None:
        match stmt:
            case ast.InputStmt():
                if in_block:
                    raise _err("`input` belongs in a network; a block's input is `in`", stmt.span)
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
        for sym in symbols(shape):  # `input x: [T, 8]` with no constant T
            hint = suggest(sym.name, sym.known) or f"define it first: `const {sym.name} = 20`"
            raise _err(f"input shape: unknown name '{sym.name}'", sym.span, hint)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise _err(
                f"input shape must be a list of integers, got {plain(shape)}", stmt.shape.span
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
        """The chain's output tensor. A call that fails is recorded and passes its input on,
        so the calls after it are still checked; its other repetitions are skipped (each
        would fail alike)."""
        current = self._source(chain, scope)
        counts = [self._count(call, scope) for call in chain.calls]
        single = sum(counts) == 1
        instances = (
            call for call, count in zip(chain.calls, counts, strict=True) for _ in range(count)
        )
        failed: set[int] = set()
        for i, call in enumerate(instances):
            if id(call) in failed:
                continue
            local = None if target is None else target if single else f"{target}.{i}"
            start, found = len(self.nodes), len(self.errors)
            try:
                current = self.call(call, scope, current, local)
            except NetspecError as e:
                self.errors += e.diagnostics
                current = current or FAILED  # 'has no input' is said once
            if len(self.errors) > found:
                failed.add(id(call))
            if self.trace is not None:
                self.trace.append(CallTrace(call, current, start, len(self.nodes)))
        return current

    def _source(self, chain: ast.Chain, scope: _Scope) -> str:
        if chain.source is not None:
            try:
                return self.tensor(chain.source, scope)
            except NetspecError as e:
                self.errors += e.diagnostics
                return FAILED
        if scope.current is not None:
            return scope.current
        return ""  # only a merge with explicit inputs can start here

    def _count(self, call: ast.Call, scope: _Scope) -> int:
        """The call's repetition count; 0 (the call skipped) when the count is wrong."""
        try:
            return self.repeat_count(call, scope)
        except NetspecError as e:
            self.errors += e.diagnostics
            return 0

    def repeat_count(self, call: ast.Call, scope: _Scope) -> int:
        """`call * N`'s N, checked against the layer limit before anything is built: every
        instance adds at least one layer, and a count of 10**12 must not become a list first."""
        if call.repeat is None:
            return 1
        count = evaluate(call.repeat, scope.env)
        if isinstance(count, Unknown):  # a block checked on its own: one instance shows all
            return 1
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _err(
                f"a repetition count must be an integer >= 1, got {show(count)}", call.repeat.span
            )
        if len(self.nodes) + count > MAX_NODES:
            raise _err(
                f"repeating '{call.name}' {count:,} times expands the network past "
                f"{MAX_NODES:,} layers; refusing to build it",
                call.repeat.span,
                "lower a repetition count",
            )
        return count

    # calls ------------------------------------------------------------------------------------
    def call(self, call: ast.Call, scope: _Scope, current: str, local: str | None) -> str:
        if call.name in self.program.blocks:
            return self.block(call, scope, current, local)
        cls = self._op_class(call)
        name = scope.prefix + (local if local is not None else scope.auto_name(call.name))
        memo = self.memo.get((id(call), id(scope.env)))
        if memo is not None and memo[0] is call and memo[1] is scope.env and current:
            op: Op | None = memo[2]  # a repetition: the same attributes in the same scope
        else:
            op = self._call_op(call, cls, scope, current, name)
        if cls.arity is None or cls.extra_inputs:  # tensors it names: looked up in each instance
            inputs = self._inputs(call, cls, self._arguments(call, cls, scope)[2], current)
        else:
            inputs = [current]
        if op is None:  # attributes of unknown value: checked as far as they go, no node
            return name
        fields = {
            "name": name,
            "inputs": tuple(inputs),
            "span": call.span,
            "scope": scope.path,
            "instantiated_at": scope.calls,
        }
        # The op's first node is validated; the op's other layers (a repetition's) are that
        # node with these fields changed, of the same types, not validated again.
        first = self.first.get(id(op))
        if first is not None and first.op is op:
            return self.add(first.evolve(**fields))
        node = Node(op=op, **fields)
        self.first[id(op)] = node
        return self.add(node)

    def _call_op(
        self, call: ast.Call, cls: type[Op], scope: _Scope, current: str, name: str
    ) -> Op | None:
        """The call's op, validated (None: attributes of unknown value), remembered for the
        call's other repetitions in the same scope."""
        values, spans, named = self._arguments(call, cls, scope)
        self._inputs(call, cls, named, current)  # the tensors' errors come before the op's
        op = self.op(cls, values, spans, call.span, f"{call.name} '{name}'", name)
        if current:
            self.memo[(id(call), id(scope.env))] = (call, scope.env, op)
        return op

    def _op_class(self, call: ast.Call) -> type[Op]:
        if call.name in OPS and call.name != "input":
            return OPS[call.name]
        known = [k for k in OPS if k != "input"] + list(self.program.blocks)
        hint = synonyms.op_hint(call.name, known) or suggest(call.name, known)
        if hint is None:
            hint = "known ops: " + ", ".join(sorted(k for k in OPS if k != "input"))
        if call.name == "input":
            hint = "declare inputs with `input NAME: [shape]`"
        if call.name in self.program.networks:
            hint = f"'{call.name}' is a network; only blocks can be used as layers"
        raise _err(f"unknown op or block '{call.name}'", call.name_span, hint)

    def _arguments(
        self, call: ast.Call, cls: type[Op], scope: _Scope
    ) -> tuple[dict[str, Any], dict[str, Span], list[str]]:
        """Attribute values and their spans, and the tensors a merge names positionally."""
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
            if (
                arg.key is None
                and cls.extra_inputs
                and _names_tensor(arg.value, scope.env, scope.tensors)
            ):
                if values:
                    raise _err(
                        f"{call.name} takes its tensors before its values",
                        arg.span,
                        f"write e.g. {call.name}(x, memory, {', '.join(cls.positional)}=...)",
                    )
                inputs.append(scope.tensors[arg.value.id])  # type: ignore[union-attr]
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
        return values, spans, inputs

    def _inputs(self, call: ast.Call, cls: type[Op], named: list[str], current: str) -> list[str]:
        """The call's tensors: a merge's, an op's that names some, else the previous output."""
        if cls.arity is None:
            inputs = self._merge_inputs(call, named, current)
        elif named:
            inputs = self._extra_inputs(call, cls, named, current)
        else:
            inputs = [current]
        if not inputs[0]:
            raise _err(
                f"'{call.name}' has no input: nothing comes before it",
                call.span,
                "declare `input x: [...]` first, or write `x -> ...`",
            )
        return inputs

    def _extra_inputs(
        self, call: ast.Call, cls: type[Op], named: list[str], current: str
    ) -> list[str]:
        """An op's tensors when it names some (attention's memory): those it names, after
        the previous output when it names fewer than it takes."""
        most = (cls.arity or 1) + cls.extra_inputs
        if len(named) > most:
            raise _err(f"{call.name} takes at most {most} tensors, got {len(named)}", call.span)
        if len(named) == most:
            return named
        if named[0] == current:
            raise _err(
                f"{call.name}({named[0]}) would read '{named[0]}' twice: it is also the "
                "previous statement's output",
                call.span,
                f"for self-attention write {call.name}({', '.join(cls.positional)}=...) alone",
            )
        if not current:
            raise _err(f"'{call.name}' has no input: nothing comes before it", call.span)
        return [current, *named]

    def _merge_inputs(self, call: ast.Call, inputs: list[str], current: str) -> list[str]:
        """A merge's tensors: those it names, after the previous output when it names one."""
        if len(inputs) == 1 and inputs[0] == current != FAILED:
            raise _err(
                f"{call.name}({call.args[0].value.id}) would combine "  # type: ignore[union-attr]
                f"'{inputs[0]}' with itself: it is also the previous statement's output",
                call.span,
                "name the other branch and write both inputs, e.g. add(main, shortcut)",
            )
        if len(inputs) < 2:
            if not current:
                raise _err(f"{call.name} needs two or more tensors", call.span)
            inputs = [current, *inputs]
        if len(inputs) < 2:
            raise _err(f"{call.name} needs two or more tensors, e.g. {call.name}(a, b)", call.span)
        return inputs

    def op(
        self,
        cls: type[Op],
        values: dict[str, Any],
        spans: dict[str, Span],
        span: Span,
        what: str,
        layer: str,
    ) -> Op | None:
        """A validated op; identical attribute sets share one frozen instance.

        A deep network repeats a few layer shapes thousands of times (ResNet-1202: 1,200
        convolutions of 6 kinds), so validating each only once halves expansion time.
        None when some attribute's value is Unknown (a block checked on its own).
        """
        if any(unknown(v) for v in values.values()):
            _check_known(cls, values, spans, span, what, layer)
            return None
        try:
            key = (cls, freeze(plain(values)))
        except TypeError:  # an unhashable value: validation will say what is wrong with it
            return build_model(cls, values, spans, span, what, layer, strict=True)  # type: ignore[no-any-return]
        if key not in self.ops:
            self.ops[key] = build_model(cls, values, spans, span, what, layer, strict=True)
        return self.ops[key]

    def block(self, call: ast.Call, scope: _Scope, current: str, local: str | None) -> str:
        block = self.program.blocks[call.name]
        self._check_nesting(call)
        memo = self.memo.get((id(call), id(scope.env)))
        if memo is not None and memo[0] is call and memo[1] is scope.env:
            env: dict[str, Any] = memo[2]  # the same env object: its body's calls memoise too
        else:
            env = _bind(call, block, scope.env, self.consts)
            self.memo[(id(call), id(scope.env))] = (call, scope.env, env)
        name = scope.prefix + (local if local is not None else scope.auto_name(call.name.lower()))
        where = ((*scope.path, name), (*scope.calls, call.span))
        return self._instance(call, block, env, name, current, where)

    def standalone(self, block: ast.BlockDef) -> None:
        """Expand a block that no network uses, with its parameters' defaults (Unknown where
        a parameter has none) and an input of no known shape."""
        call = ast.Call(block.name, (), None, block.name_span, block.name_span)
        env = _bind(call, block, {}, self.consts, standalone=True)
        self._instance(call, block, env, block.name, STANDALONE_INPUT, ((), ()))

    def _instance(
        self,
        call: ast.Call,
        block: ast.BlockDef,
        env: dict[str, Any],
        name: str,
        current: str,
        where: tuple[tuple[str, ...], tuple[Span, ...]],
    ) -> str:
        """The block's body expanded under `name`, reading `current`; its output tensor. An
        error in the body names the instance: `where` holds the enclosing instances' names and
        calls (none for the block on its own)."""
        path, calls = where
        inner = _Scope(
            prefix=name + ".",
            env=env,
            tensors={"in": current} if current else {},
            path=path or (name,),
            current=current or None,
            calls=calls,
        )
        self.block_stack.append(call.name)
        found = len(self.errors)
        try:
            self.body(block.body, inner, in_block=True)
        finally:
            self.block_stack.pop()
        if path and len(self.errors) > found:
            self.errors[found:] = _instantiated(NetspecError(self.errors[found:]), call).diagnostics
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

    def _check_nesting(self, call: ast.Call) -> None:
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

    # networks ---------------------------------------------------------------------------------
    def network(self, net: ast.NetworkDef) -> tuple[str, ...]:
        scope = _Scope(prefix="", env=dict(self.consts), tensors={}, path=())
        self.body(net.body, scope, in_block=False)
        if not self.errors and not any(isinstance(s, ast.InputStmt) for s in net.body):
            raise _err(
                f"network {net.name} has no input",
                net.name_span,
                "declare one, e.g. `input x: [1, 28, 28]`",
            )
        if scope.output:
            return tuple(scope.output)
        return (scope.current or FAILED,)


def _given(call: ast.Call, block: ast.BlockDef, env: dict[str, Any]) -> dict[str, tuple[Any, Span]]:
    """The values a block call gives, by parameter name (positional ones in order)."""
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
                    f"block {call.name} has no parameter '{key}'", arg.span, suggest(key, params)
                )
            if key in order:
                order.remove(key)
        if key in given:
            raise _err(f"block {call.name}: '{key}' is given twice", arg.span)
        given[key] = (evaluate(arg.value, env), arg.span)
    return given


def _bind(
    call: ast.Call,
    block: ast.BlockDef,
    caller: dict[str, Any],
    consts: dict[str, Any],
    standalone: bool = False,
) -> dict[str, Any]:
    """The block body's names: the constants and every parameter, given or defaulted, each
    checked against its declared type. `standalone`: a parameter without a default is
    Unknown (the block is checked on its own)."""
    env = dict(consts)
    given = _given(call, block, caller)
    for p in block.params:
        if p.name in given:
            value, span = given[p.name]
        elif p.default is not None:
            value, span = evaluate(p.default, env), p.span
        elif standalone:
            value, span = Unknown(p.name), p.span
        else:
            raise _err(f"block {call.name} needs a value for '{p.name}'", call.span)
        env[p.name] = value if p.type is None else _typed(call, p, value, span)
    return env


def _typed(call: ast.Call, p: ast.Param, value: Any, span: Span) -> Any:
    """A parameter's value checked against its declared type (an int fills a float)."""
    assert p.type is not None
    if isinstance(value, Unknown):
        return value
    allowed = PARAM_TYPES.get(p.type.id)
    if allowed is None:
        raise _err(
            f"unknown parameter type '{p.type.id}'", p.type.span, suggest(p.type.id, PARAM_TYPES)
        )
    if (isinstance(value, bool) and p.type.id != "bool") or not isinstance(value, allowed):
        raise _err(
            f"block {call.name}: '{p.name}' must be {p.type.id}, got {show(value)}",
            value.span if isinstance(value, Symbol) else span,
            suggest(value.name, value.known) if isinstance(value, Symbol) else None,
        )
    return float(value) if p.type.id == "float" else value  # type: ignore[arg-type]


def expand(
    program: Program, network: str | None = None, trace: list[CallTrace] | None = None
) -> Network:
    """Build the IR of one network of the program; `trace`, when given, receives a CallTrace
    per call expanded (also when expansion fails part way). Raises NetspecError with every
    independent error: each statement and call is checked whatever became of those before."""
    net = choose_network(program, network)
    errors = [
        Diagnostic(
            Severity.ERROR,
            f"train section for unknown network '{t.network}'",
            t.name_span,
            suggest(t.network, program.networks),
        )
        for t in program.trains.values()
        if t.network not in program.networks
    ]
    try:
        with bulk():
            ex = _Expander(program, trace)  # a constant's error stops it: all read them
            outputs = _collect(ex, lambda: ex.network(net))
            train = _collect(ex, lambda: train_section(program, net.name, ex.consts, ex.nodes))
    except RecursionError:
        raise _err("the spec nests too deeply to expand", net.span) from None
    if errors or ex.errors or outputs is None:
        raise NetspecError(list(dict.fromkeys(errors + ex.errors)))
    return Network(
        name=net.name,
        nodes=tuple(ex.nodes),
        outputs=outputs,
        train=train,
        source=program.main,
        labels=None if train is None else train.labels,
    )


STANDALONE_INPUT = "in"  # what a block checked on its own reads: a tensor of no known shape


def check_block(program: Program, name: str) -> None:
    """Check a block on its own, as no network uses it: its op and block names, attribute
    names, and every attribute whose value does not depend on a parameter without a default
    (NetspecError otherwise). Its shapes need an input, so only a network checks them."""
    ex = _Expander(program)
    try:
        _collect(ex, lambda: ex.standalone(program.blocks[name]))
    except RecursionError:
        raise _err("the spec nests too deeply to expand", program.blocks[name].span) from None
    if ex.errors:
        raise NetspecError(list(dict.fromkeys(ex.errors)))


def _collect(ex: _Expander, run: Callable[[], T]) -> T | None:
    """`run()`, its errors added to `ex.errors` (None when one stopped it)."""
    try:
        return run()
    except NetspecError as e:
        ex.errors += e.diagnostics
    except _AbortError as stop:
        ex.errors += stop.error.diagnostics
    return None


def _check_known(
    cls: type[Op], values: dict[str, Any], spans: dict[str, Span], span: Span, what: str, layer: str
) -> None:
    """Validate the attributes whose values are known, and the names of all: the errors that
    an unknown value leaves open (a missing or mistyped value, a rule across attributes) would
    be guesses, and are dropped."""
    probe = {
        k: None if unknown(v) else v
        for k, v in values.items()
        if not unknown(v) or k not in cls.model_fields  # an unknown name is wrong whatever
    }
    located = {spans[k] for k in probe if k in spans}
    try:
        build_model(cls, probe, spans, span, what, layer, strict=True)
    except NetspecError as e:
        real = [d for d in e.diagnostics if d.span in located or _inside(d.span, located)]
        if real:
            raise NetspecError(real, e.exit_code) from None


def _inside(span: Span | None, spans: set[Span]) -> bool:
    """Whether `span` lies within one of `spans` (a misspelt name inside an attribute)."""
    if span is None:
        return False
    return any(
        s.file == span.file
        and (s.line, s.column) <= (span.line, span.column)
        and (span.end_line or span.line, span.end_column or span.column)
        <= (s.end_line or s.line, s.end_column or s.column)
        for s in spans
    )


def iter_calls(stmts: tuple[ast.Stmt, ...]) -> Iterator[ast.Call]:
    for s in stmts:
        if isinstance(s, ast.Assign):
            yield from s.chain.calls
        elif isinstance(s, ast.Chain):
            yield from s.calls


def _instantiated(e: NetspecError, call: ast.Call) -> NetspecError:
    """An error in a block's body also names the call that built it: the body line alone does
    not say which of several instances failed."""
    where = f"instantiated at {call.span}"
    diags = [
        replace(d, hint=f"{d.hint} ({where})" if d.hint else where)
        if d.span is not None and d.span != call.span and "instantiated at" not in (d.hint or "")
        else d
        for d in e.diagnostics
    ]
    return NetspecError(diags, e.exit_code)
