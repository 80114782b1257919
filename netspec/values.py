"""DSL values: constant expressions evaluated, bare names kept as Symbols, and values as
Pydantic sees them (`plain`) or as a memo key (`freeze`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netspec import tree as ast
from netspec.callform import dsl
from netspec.errors import NetspecError, Span, suggest


@dataclass(frozen=True)
class Symbol:
    """A bare name with no binding: `padding=same`, `loss = cross_entropy`.

    It is a choice word when the attribute accepts it, else a misspelt name: `known` holds the
    constants and parameters in scope where it was written, for a suggestion.
    """

    name: str
    span: Span
    known: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Unknown:
    """The value of a block parameter that has no default, when the block is checked on its
    own: whatever is computed from it is unknown too, and an attribute holding it is left
    unvalidated (its type and bounds need the value)."""

    name: str


def unknown(v: Any) -> bool:
    """Whether a value holds an Unknown anywhere (in a list or a call's arguments too)."""
    if isinstance(v, Unknown):
        return True
    if isinstance(v, list | tuple):
        return any(unknown(i) for i in v)
    if isinstance(v, dict):
        return any(unknown(i) for i in v.values())
    return False


def _err(message: str, span: Span | None, hint: str | None = None) -> NetspecError:
    return NetspecError.at(message, span, hint)


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
            if isinstance(v, Unknown):
                return v
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _err(f"cannot negate {show(v)}", span)
            return -v
        case ast.BinOp(op=op, left=left, right=right, span=span):
            a, b = evaluate(left, env), evaluate(right, env)
            if isinstance(a, Unknown) or isinstance(b, Unknown):
                return a if isinstance(a, Unknown) else b
            for v, side in ((a, left), (b, right)):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    hint = suggest(v.name, env) if isinstance(v, Symbol) else None
                    raise _err(f"arithmetic needs numbers, got {show(v)}", side.span, hint)
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


def freeze(v: Any) -> object:
    """A hashable twin of an attribute value (dicts and lists included), for memoising ops.

    Types are part of the key: 1, 1.0 and True are equal in Python but not as attributes.
    """
    if isinstance(v, dict):
        return tuple(sorted((k, freeze(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return ("list", tuple(freeze(x) for x in v))
    hash(v)
    return (type(v), v)


def plain(v: Any, tuples: bool = False) -> Any:
    """Symbols become strings, for Pydantic; lists become tuples when `tuples` (strict mode)."""
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, list):
        items = [plain(i, tuples) for i in v]
        return tuple(items) if tuples else items
    if isinstance(v, dict):
        return {k: plain(x, tuples) for k, x in v.items()}
    return v


def symbols(v: Any) -> list[Symbol]:
    """The bare names in a value, in order."""
    if isinstance(v, Symbol):
        return [v]
    if isinstance(v, list | tuple):
        return [s for i in v for s in symbols(i)]
    if isinstance(v, dict):
        return [s for i in v.values() for s in symbols(i)]
    return []


def kind(v: Any) -> str:
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


def show(v: Any) -> str:
    if isinstance(v, Symbol):
        return f"the unknown name '{v.name}'"
    return dsl(v)
