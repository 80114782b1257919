"""`fmt` and `lsp`: the language in the editor. The formatter and the server (pygls, the `lsp`
extra) load inside the handlers, so `netspec check` stays fast."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netspec.cli.args import Command
from netspec.cli.report import err, report
from netspec.errors import EXIT_RUNTIME, EXIT_SPEC, EXIT_USAGE, NetspecError


def _fmt_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("files", nargs="+", metavar="FILE", help=".net files, folders, or -")
    f.add_argument(
        "--check",
        action="store_true",
        help="change nothing; list the files that would change and exit 1 if there are any",
    )


def _targets(names: list[str]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*.net") if p.is_file())
        elif path.is_file():
            out.append(path)
        else:
            raise NetspecError.at(f"no such file or folder: {name}", exit_code=EXIT_USAGE)
    return out


def _formatted(path: Path) -> tuple[str, str] | None:
    """(old, new) text of one file; None when it cannot be read or does not parse (said)."""
    from netspec.fmt import format_text

    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        err(f"{path}: error: cannot read it as UTF-8 text: {e}")
        return None
    try:
        return old, format_text(old, str(path))
    except NetspecError as e:
        report(e.diagnostics)
        err(f"{path}: not formatted: it does not parse")
        return None


def run_fmt(args: argparse.Namespace) -> int:
    from netspec.files import atomic_write_text
    from netspec.fmt import format_text

    if args.files == ["-"]:
        sys.stdout.write(format_text(sys.stdin.read(), "<stdin>"))
        return 0
    if "-" in args.files:
        raise NetspecError.at("- (standard input) cannot be mixed with files", exit_code=EXIT_USAGE)
    changed, failed, files = [], 0, _targets(args.files)
    for path in files:
        texts = _formatted(path)
        if texts is None:
            failed += 1
            continue
        old, new = texts
        if new == old:
            continue
        changed.append(path)
        if args.check:
            print(f"would reformat {path}")
        else:
            atomic_write_text(path, new)
            err(f"reformatted {path}")
    verb = "would be reformatted" if args.check else "reformatted"
    err(
        f"{len(changed)} file(s) {verb}, {len(files) - len(changed) - failed} unchanged"
        + (f", {failed} not parsed" if failed else "")
    )
    return EXIT_SPEC if failed or (args.check and changed) else 0


def run_lsp(args: argparse.Namespace) -> int:
    try:
        from netspec.lsp.server import serve
    except ImportError as e:
        raise NetspecError.at(
            f"netspec lsp needs pygls and lsprotocol ({e})",
            hint="install the lsp extra: pip install 'netspec[lsp]'",
            exit_code=EXIT_RUNTIME,
        ) from None
    serve()
    return 0


FMT = Command(
    "fmt",
    "format .net files in the canonical layout",
    _fmt_arguments,
    run_fmt,
    description="Rewrite .net files in netspec's one layout (indentation, spacing; comments "
    "and argument order kept). A folder means every .net file under it; - reads standard "
    "input and writes standard output. A file that does not parse is left alone.",
)
LSP = Command(
    "lsp",
    "run the language server on stdin/stdout (for editors)",
    lambda p: None,
    run_lsp,
    description="The netspec language server: diagnostics as you type, shapes inline, hover, "
    "completion, go to definition, outline and formatting. Needs the lsp extra: "
    "pip install 'netspec[lsp]'.",
)
