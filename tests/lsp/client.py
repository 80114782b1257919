"""A minimal LSP client over a subprocess's pipes, as an editor talks to `netspec lsp`."""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parent.parent.parent


class ResponseError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


def _read_message(stream: BinaryIO) -> dict[str, Any] | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
    assert length is not None, "a message without Content-Length"
    message: dict[str, Any] = json.loads(stream.read(length))
    return message


class Client:
    """Start a server, send requests and notifications, wait for what it sends back."""

    def __init__(self, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netspec", "lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self.ids = itertools.count(1)
        self.responses: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.stderr: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    # transport --------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            self.proc.stdin.flush()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while (message := _read_message(self.proc.stdout)) is not None:
            if "method" in message and "id" in message:  # a request of the server's
                self._send({"id": message["id"], "result": None})
            elif "method" in message:
                with self.changed:
                    self.notifications.append(message)
                    self.changed.notify_all()
            else:
                self.responses.setdefault(message["id"], queue.Queue()).put(message)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    # the protocol -----------------------------------------------------------------------------
    def request(self, method: str, params: Any = None, timeout: float = 20) -> Any:
        msg_id = next(self.ids)
        box = self.responses.setdefault(msg_id, queue.Queue())
        self._send({"id": msg_id, "method": method, "params": params})
        reply = box.get(timeout=timeout)
        del self.responses[msg_id]
        if "error" in reply:
            raise ResponseError(reply["error"])
        return reply.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        self._send({"method": method, "params": params})

    def wait_for(
        self, method: str, where: Callable[[Any], bool] = lambda p: True, timeout: float = 20
    ) -> Any:
        """The params of the first notification `method` (not yet taken) that `where` accepts."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for i, note in enumerate(self.notifications):
                    if note["method"] == method and where(note.get("params")):
                        del self.notifications[: i + 1]
                        return note.get("params")
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no {method}; server stderr:\n{self.stderr_text()}")
                self.changed.wait(left)

    def stderr_text(self) -> str:
        return b"".join(self.stderr).decode(errors="replace")

    def initialize(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": None,
                "capabilities": {"workspace": {"inlayHint": {"refreshSupport": True}}},
                "initializationOptions": options or {},
            },
        )
        self.notify("initialized", {})
        return result

    def close(self) -> None:
        try:
            self.request("shutdown", timeout=10)
            self.notify("exit")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
