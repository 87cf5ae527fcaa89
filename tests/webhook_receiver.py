"""A real HTTP receiver for webhook tests: a stdlib server on 127.0.0.1 in a thread.

Each path answers from a script: a list of replies used in turn (the last one
repeats). A reply is a status code, optionally with headers, or ``HANG``: hold the
request until the receiver closes (the client times out first). Every request is
recorded with its headers, raw body and whether its signature verifies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from soniq.webhooks import verify_webhook_signature

HANG = "hang"


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"ok": true}'


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None


class Receiver:
    """The server, its scripts and what it received."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.scripts: dict[str, list[Reply | str]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this receiver."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def on(self, path: str, *replies: Reply | str) -> str:
        """Script ``path``; return its URL."""
        self.scripts[path] = list(replies)
        return self.url(path)

    def requests(self, path: str) -> list[Received]:
        """What ``path`` received so far."""
        with self._lock:
            return [r for r in self.received if r.path == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = None
                if receiver.secret is not None:
                    verified = verify_webhook_signature(
                        body,
                        headers.get("x-webhook-signature"),
                        receiver.secret,
                        timestamp=headers.get("x-webhook-timestamp"),
                    )
                with receiver._lock:
                    seen = len([r for r in receiver.received if r.path == self.path])
                    receiver.received.append(Received(self.path, headers, body, verified))
                    script = receiver.scripts.get(self.path, [Reply(404)])
                    reply = script[min(seen, len(script) - 1)]
                if reply == HANG:
                    receiver._closing.wait(30)
                    return
                assert isinstance(reply, Reply)
                payload = reply.body.encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Release hanging requests and stop serving."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def receiver(secret: str | None = None) -> Iterator[Receiver]:
    """A started :class:`Receiver`, closed afterwards."""
    server = Receiver(secret)
    server.start()
    try:
        yield server
    finally:
        server.close()
