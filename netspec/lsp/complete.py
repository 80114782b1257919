"""Completion: what may be written at the cursor, read from the text before it.

The text being typed rarely parses, so the context comes from a tolerant scan of the text
before the cursor (which section, which call's parentheses, after which `key =` or `->`),
and the names from the document's last analysis (imports included) and from that scan.
Ops, attributes, settings and their choices come from the registries (schema.py).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from netspec.docs import signature as op_signature
from netspec.lsp import schema
from netspec.lsp.analysis import Document
from netspec.lsp.hover import block_header
from netspec.ops import OPS
from netspec.recipe import TrainSpec

KEYWORDS = ("network", "block", "train", "const", "import")  # what starts a top-level item
STATEMENT_WORDS = ("input", "output")  # what starts a statement besides names and calls
_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\\n]|\\.)*"?)|(?P<comment>#[^\n]*)|(?P<nl>\n)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<number>[0-9][0-9_.eE]*)"
    r"|(?P<op>->|//|[^\sA-Za-z0-9_])|[ \t\r\f]+"
)


_BLOCK = re.compile(r"^[ \t]*block[ \t]+(\w+)[ \t]*\(([^)]*)\)", re.MULTILINE)


def _words(text: str) -> list[str]:
    return [m.group() for m in _TOKEN.finditer(text) if m.lastgroup not in (None, "nl", "comment")]


@dataclass(frozen=True)
class Item:
    label: str
    kind: str  # op, block, attribute, parameter, constant, tensor, setting, value, keyword, file
    detail: str | None = None
    documentation: str | None = None
    insert: str | None = None  # when it differs from the label (`stride=`)
    sort: int = 5  # lower first


@dataclass
class _Open:
    char: str  # ( or [
    name: str | None  # the word before a `(`: the op, block or value being called
    key: str | None = None  # the `key=` being given inside it, if any
    arg_tokens: int = 0  # tokens since the last `,` or the opening
    positional: int = 0  # arguments given without a key before the current one
    start: int = 0  # where its tokens start in the statement


@dataclass
class Context:
    section: str | None = None  # network, block, train; None at the top level
    header: list[str] = field(default_factory=list)  # the section's words: ["block", "B", ...]
    statement: list[str] = field(default_factory=list)  # tokens of the statement so far
    opens: list[_Open] = field(default_factory=list)
    body: list[list[str]] = field(default_factory=list)  # the section's earlier statements
    in_string: bool = False
    in_comment: bool = False


def context(text: str) -> Context:
    """Where the end of `text` (the text before the cursor) stands."""
    ctx = Context()
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind is None:
            continue
        ctx.in_string = kind == "string" and (len(tok) == 1 or not tok.endswith('"'))
        ctx.in_comment = kind == "comment"
        if kind == "comment":
            continue
        if kind == "nl":
            if not ctx.opens and not (ctx.statement and ctx.statement[-1] == "->"):
                if ctx.statement and ctx.section is not None:
                    ctx.body.append(ctx.statement)
                ctx.statement = []
            continue
        _step(ctx, tok)
    if text.endswith("\n"):
        ctx.in_comment = ctx.in_string = False
    return ctx


def _step(ctx: Context, tok: str) -> None:
    if tok == "{":
        ctx.section = ctx.statement[0] if ctx.statement else "network"
        ctx.header, ctx.statement, ctx.opens, ctx.body = ctx.statement, [], [], []
        return
    if tok == "}":
        ctx.section, ctx.header, ctx.statement, ctx.opens, ctx.body = None, [], [], [], []
        return
    last = ctx.statement[-1] if ctx.statement else None
    if tok in ("(", "["):
        name = last if tok == "(" and last is not None and _is_word(last) else None
        ctx.opens.append(_Open(tok, name, start=len(ctx.statement) + 1))
    elif tok in (")", "]"):
        if ctx.opens:
            ctx.opens.pop()
    elif ctx.opens and tok == ",":
        inner = ctx.opens[-1]
        if inner.key is None and inner.arg_tokens > 0:
            inner.positional += 1
        inner.key, inner.arg_tokens = None, -1
    elif ctx.opens and tok == "=" and last is not None and ctx.opens[-1].arg_tokens == 1:
        ctx.opens[-1].key = last
    if ctx.opens and tok not in ("(", "["):
        ctx.opens[-1].arg_tokens += 1
    ctx.statement.append(tok)


def _is_word(tok: str) -> bool:
    return bool(tok) and (tok[0].isalpha() or tok[0] == "_")


# ---- items -----------------------------------------------------------------------------------


def complete(doc: Document | None, text: str, line: int, column: int) -> list[Item]:
    """Completion items at (line, column) (1-based) of `text`; `doc` is its last analysis."""
    lines = text.split("\n")
    current = lines[line - 1][: column - 1] if line <= len(lines) else ""
    before = "\n".join([*lines[: line - 1], current])
    ctx = context(before)
    if ctx.in_comment:
        return []
    # The word being typed is not context: the client filters the items by it.
    if ctx.statement and _is_word(ctx.statement[-1]) and re.search(r"[A-Za-z0-9_]$", before):
        ctx.statement.pop()
        if ctx.opens and ctx.opens[-1].arg_tokens > 0:
            ctx.opens[-1].arg_tokens -= 1
    names = _Names.of(doc, text, ctx)
    if ctx.in_string:
        return _files(doc, ctx) if ctx.statement[:1] == ["import"] else []
    if ctx.section is None:
        return _top_level(ctx, names)
    if ctx.section == "train":
        return _train(ctx, names)
    return _body(ctx, names)


@dataclass
class _Names:
    consts: dict[str, str]  # name -> detail
    blocks: dict[str, str]
    networks: list[str]
    params: list[str]  # of the block being written
    tensors: list[str]  # defined earlier in this body
    block_params: dict[str, list[str]]  # each block's parameter names

    @classmethod
    def of(cls, doc: Document | None, text: str, ctx: Context) -> _Names:
        consts: dict[str, str] = {}
        blocks: dict[str, str] = {}
        block_params: dict[str, list[str]] = {}
        networks: list[str] = []
        if doc is not None and doc.program is not None:
            for c in doc.program.consts.values():
                value = doc.consts.get(c.name)
                consts[c.name] = "const" if value is None else f"= {schema.value_text(value)}"
            for b in doc.program.blocks.values():
                blocks[b.name] = block_header(b)
                block_params[b.name] = [p.name for p in b.params]
            networks = list(doc.program.networks)
        # What the text defines now, parsed or not.
        for kind, name in re.findall(r"^[ \t]*(const|network)[ \t]+(\w+)", text, re.M):
            if kind == "const":
                consts.setdefault(name, "const")
            elif name not in networks:
                networks.append(name)
        for name, params in _BLOCK.findall(text):
            blocks.setdefault(name, f"block {name}({params.strip()})")
            block_params.setdefault(name, _params(["(", *_words(params), ")"]))
        params = _params(ctx.header) if ctx.section == "block" else []
        tensors = ["in"] if ctx.section == "block" else []
        for stmt in ctx.body:
            if len(stmt) >= 2 and stmt[1] == "=" and _is_word(stmt[0]):
                tensors.append(stmt[0])
            elif len(stmt) >= 2 and stmt[0] == "input" and _is_word(stmt[1]):
                tensors.append(stmt[1])
        return cls(consts, blocks, networks, params, tensors, block_params)

    def values(self) -> list[Item]:
        """Names usable as values: constants and (in a block) its parameters."""
        items = [Item(p, "parameter", "block parameter", sort=1) for p in self.params]
        items += [Item(c, "constant", d, sort=2) for c, d in self.consts.items()]
        return items

    def tensor_items(self) -> list[Item]:
        return [Item(t, "tensor", "tensor", sort=0) for t in dict.fromkeys(self.tensors)]


def _params(header: list[str]) -> list[str]:
    """The parameter names in `block B(a: int, b = 2)`."""
    out, depth, expect = [], 0, False
    for tok in header:
        if tok == "(":
            depth += 1
            expect = depth == 1
        elif tok == ")":
            depth -= 1
        elif tok == "," and depth == 1:
            expect = True
        elif expect and _is_word(tok):
            out.append(tok)
            expect = False
    return out


def _top_level(ctx: Context, names: _Names) -> list[Item]:
    stmt = ctx.statement
    if not stmt:
        return [Item(k, "keyword") for k in KEYWORDS]
    if stmt == ["train"]:
        return [Item(n, "network", "network") for n in names.networks]
    if stmt[0] == "const" and "=" in stmt:
        return names.values()
    return []


def _field_items(model: type[BaseModel], given: set[str]) -> list[Item]:
    return [
        Item(
            f.name,
            "attribute",
            f.text,
            _choices_doc(f),
            insert=f"{f.name}=",
            sort=1 if f.default is None else 2,
        )
        for f in schema.fields(model)
        if f.name not in given
    ]


def _choices_doc(f: schema.FieldDoc) -> str | None:
    return None if not f.choices else "accepts: " + ", ".join(c.label for c in f.choices)


def _choice_items(choices: list[schema.Choice]) -> list[Item]:
    return [Item(c.label, "value", c.detail, sort=0) for c in choices]


def _given(ctx: Context) -> set[str]:
    """The `key=` already written in the innermost call."""
    tokens = ctx.statement[ctx.opens[-1].start :] if ctx.opens else []
    depth, out = 0, set()
    for prev, tok in itertools.pairwise(tokens):
        depth += (prev in ("(", "[")) - (prev in (")", "]"))
        if tok == "=" and depth == 0 and _is_word(prev):
            out.add(prev)
    return out


def _models(
    ctx: Context, root: type[BaseModel] | None, root_key: str | None
) -> type[BaseModel] | None:
    """The model whose fields the innermost call takes, walking the open calls outwards-in."""
    model, key = root, root_key
    for open_ in ctx.opens:
        if open_.char == "[":
            continue
        inner: type[BaseModel] | None = None
        if open_.name in OPS:
            inner = OPS[open_.name]
        elif model is not None and key is not None and open_.name is not None:
            info = model.model_fields.get(key)
            inner = None if info is None else schema.model_for(info.annotation, open_.name)
        model, key = inner, open_.key
    return model


def _value_choices(model: type[BaseModel] | None, key: str | None) -> list[schema.Choice]:
    if model is None or key is None:
        return []
    info = model.model_fields.get(key)
    return [] if info is None else schema.choices(info.annotation)


def _train(ctx: Context, names: _Names) -> list[Item]:
    stmt = ctx.statement
    if not stmt:
        set_before = {s[0] for s in ctx.body if s}
        return [
            Item(f.name, "setting", f.text, _choices_doc(f), insert=f"{f.name} = ", sort=2)
            for f in schema.fields(TrainSpec)
            if f.name not in set_before
        ]
    if len(stmt) < 2 or stmt[1] != "=":
        return []
    key = stmt[0]
    if not ctx.opens or all(o.char == "[" for o in ctx.opens):
        return _choice_items(_value_choices(TrainSpec, key)) + names.values()
    model = _models(ctx, TrainSpec, key)
    inner = ctx.opens[-1]
    if inner.key is not None:
        return _choice_items(_value_choices(model, inner.key)) + names.values()
    return ([] if model is None else _field_items(model, _given(ctx))) + names.values()


def _body(ctx: Context, names: _Names) -> list[Item]:
    stmt = ctx.statement
    if ctx.opens:
        return _inside_call(ctx, names)
    last = stmt[-1] if stmt else None
    if last == "->" or (stmt[:1] == ["output"] and last in ("output", ",")):
        return names.tensor_items()
    if stmt[:1] in (["input"], ["output"]) or last in ("*", ":"):
        return names.values() if last == "*" else []
    items = _ops(names)
    if not stmt:
        items += [Item(w, "keyword", sort=6) for w in STATEMENT_WORDS]
        items += [Item(t, "tensor", "tensor", insert=f"{t} -> ", sort=7) for t in names.tensors]
    elif last == "=":
        items += [Item(t, "tensor", "tensor", insert=f"{t} -> ", sort=7) for t in names.tensors]
    return items


def _ops(names: _Names) -> list[Item]:
    items = [
        Item(name, "op", op_signature(cls), cls.summary, sort=3)
        for name, cls in OPS.items()
        if name != "input"
    ]
    items += [Item(b, "block", header, sort=2) for b, header in names.blocks.items()]
    return items


def _inside_call(ctx: Context, names: _Names) -> list[Item]:
    inner = ctx.opens[-1]
    if inner.char == "[":
        if len(ctx.opens) == 1 and inner.arg_tokens <= 0 and ctx.statement[:1] != ["input"]:
            return _ops(names)  # a `[ ... ]` group of calls
        return names.values()
    if inner.name is not None and inner.name in names.blocks and len(ctx.opens) == 1:
        if inner.key is not None:
            return names.values()
        given = _given(ctx)
        return [
            Item(p, "parameter", f"parameter of {names.blocks[inner.name]}", insert=f"{p}=", sort=1)
            for p in names.block_params.get(inner.name, [])
            if p not in given
        ] + names.values()
    model = _models(ctx, None, None)
    if model is None:
        return names.values()
    if inner.key is not None:
        return _choice_items(_value_choices(model, inner.key)) + names.values()
    cls = OPS.get(inner.name or "")
    filled = set(getattr(cls, "positional", ())[: inner.positional])
    items = _field_items(model, _given(ctx) | filled)
    if cls is not None and (cls.arity is None or cls.extra_inputs):  # add(a, b), attention(x, m)
        items = names.tensor_items() + items
    return items + names.values()


def _files(doc: Document | None, ctx: Context) -> list[Item]:
    """`.net` files beside the document, for `import "`."""
    if doc is None:
        return []
    folder = doc.path.resolve().parent
    try:
        found = sorted(p for p in folder.rglob("*.net") if p.resolve() != doc.path.resolve())
    except OSError:
        return []
    return [Item(str(p.relative_to(folder)), "file", sort=1) for p in found[:200]]
