"""Test support: the plumbing the protocol-level cloud test servers share — an HTTP server on
127.0.0.1 (a free port) served from a thread, the error a handler raises to answer with a
cloud error, and a context manager that runs a server and shuts it down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar


class APIError(Exception):
    """Raised by a handler: the server answers with this status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LoopbackServer:
    """Holds ``httpd`` (bound at construction) and the ``thread`` that serves it."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


_Server = TypeVar("_Server", bound=LoopbackServer)


@contextmanager
def running(server: _Server) -> Iterator[_Server]:
    """``server`` serving inside the block, shut down and its port closed after it."""
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
