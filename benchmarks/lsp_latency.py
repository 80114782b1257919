"""How fast `netspec lsp` answers an edit, and whether its memory stays flat.

    .venv/bin/python benchmarks/lsp_latency.py [--edits 200] [--memory-edits 1000] [SPEC]

The server runs as an editor runs it (a subprocess on stdio), with the debounce set to 0 so
that what is timed is the work, not the pause: from sending a one-character `didChange` (a
digit of the last layer's size, toggled) to receiving that version's `publishDiagnostics`.
Then the same analysis in-process (`analyse_document`), without the protocol. Then the
server's resident memory (VmRSS) every 100 edits over `--memory-edits` edits.
Targets: a median under 100 ms warm; RSS flat (growth after the first 100 edits under 5%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netspec.lsp.analysis import analyse_document  # noqa: E402
from tests.lsp.client import Client  # noqa: E402

WARMUP = 10


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Editing:
    """One open document whose one character is toggled edit after edit."""

    def __init__(self, client: Client, path: Path) -> None:
        self.client, self.uri, self.version = client, path.as_uri(), 1
        self.text = path.read_text(encoding="utf-8")
        lines = self.text.split("\n")
        # The last digit of the last `dense(N)`: the edit changes a layer, not a comment.
        self.line = max(i for i, s in enumerate(lines) if "dense(" in s)
        self.col = lines[self.line].index(")", lines[self.line].index("dense(")) - 1
        self.digits = (lines[self.line][self.col], "7")
        item = {"uri": self.uri, "languageId": "netspec", "version": 1, "text": self.text}
        client.notify("textDocument/didOpen", {"textDocument": item})
        self.wait()

    def wait(self) -> list[object]:
        got = self.client.wait_for(
            "textDocument/publishDiagnostics",
            lambda p: p["uri"] == self.uri and p.get("version") == self.version,
        )
        return got["diagnostics"]  # type: ignore[no-any-return]

    def edit(self) -> float:
        """One keystroke; seconds until its diagnostics arrive."""
        self.version += 1
        char = self.digits[self.version % 2]
        rng = {
            "start": {"line": self.line, "character": self.col},
            "end": {"line": self.line, "character": self.col + 1},
        }
        params = {
            "textDocument": {"uri": self.uri, "version": self.version},
            "contentChanges": [{"range": rng, "text": char}],
        }
        start = time.perf_counter()
        self.client.notify("textDocument/didChange", params)
        self.wait()
        return time.perf_counter() - start


def _summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=10)
    return (
        f"{label:<28} median {statistics.median(ms):7.1f} ms   p10 {q[0]:7.1f}   p90 {q[-1]:7.1f}"
        f"   min {ms[0]:7.1f}   max {ms[-1]:7.1f}   (n={len(ms)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "resnet152.net"))
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--memory-edits", type=int, default=1000)
    args = parser.parse_args()
    spec = Path(args.spec).resolve()

    client = Client()
    client.initialize({"debounceMs": 0})
    try:
        doc = Editing(client, spec)
        for _ in range(WARMUP):
            doc.edit()
        print(_summary("stdio didChange->diagnostics", [doc.edit() for _ in range(args.edits)]))

        text = spec.read_text(encoding="utf-8")
        for _ in range(WARMUP):
            analyse_document(spec, text)
        inproc = []
        for _ in range(args.edits):
            start = time.perf_counter()
            analyse_document(spec, text)
            inproc.append(time.perf_counter() - start)
        print(_summary("in-process analysis", inproc))

        samples = []
        for i in range(1, args.memory_edits + 1):
            doc.edit()
            if i % 100 == 0:
                samples.append((i, _rss_mib(client.proc.pid)))
        print("RSS over edits (MiB): " + ", ".join(f"{i}: {m:.1f}" for i, m in samples))
        base, last = samples[0][1], samples[-1][1]
        growth = (last - base) / base
        print(f"growth after edit {samples[0][0]}: {last - base:+.1f} MiB ({growth:+.1%})")
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
