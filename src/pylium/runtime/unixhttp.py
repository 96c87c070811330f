"""L4: a small JSON-over-HTTP server on a unix socket, for the agent's REST API.

Upstream's agent serves its API (``/v1/...``) on ``/var/run/cilium/cilium.sock``; the CNI
plugin and the CLI are its clients. Routes are registered as (method, path pattern) ->
handler; a handler gets a :class:`Request` and returns ``(status, json-able body)`` or raises
:class:`HttpError`. Requests are served on threads, so handlers must be thread-safe.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pylium.base.errors import PyliumError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str]
    """Named groups captured from the route pattern."""
    query: Mapping[str, str]
    body: Any
    """The decoded JSON body, or None."""


class HttpError(Exception):
    """Ends a request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request], tuple[int, Any]]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """``pattern`` is a path with ``{name}`` placeholders matching one segment, or
        ``{name:path}`` matching the rest of the path."""
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", pattern)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def dispatch(self, method: str, target: str, raw_body: bytes) -> tuple[int, Any]:
        parts = urlsplit(target)
        allowed = []
        for route_method, regex, handler in self._routes:
            match = regex.match(parts.path)
            if not match:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            try:
                body = json.loads(raw_body) if raw_body.strip() else None
            except ValueError as err:
                return 400, {"error": f"request body is not JSON: {err}"}
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            request = Request(method, parts.path, match.groupdict(), query, body)
            try:
                return handler(request)
            except HttpError as err:
                return err.status, {"error": err.message}
            except PyliumError as err:
                return 500, {"error": str(err)}
        if allowed:
            return 405, {"error": f"{method} not allowed on {parts.path}"}
        return 404, {"error": f"no such path {parts.path}"}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of CNI calls must queue, not fail with EAGAIN
    router: Router


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, body = self.server.router.dispatch(self.command, self.path, raw)
        except Exception as err:  # a bug in a handler must not kill the server thread
            log.exception("API handler failed", extra={"path": self.path})
            status, body = 500, {"error": f"internal error: {err}"}
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def address_string(self) -> str:  # unix sockets have no client address
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)


class UnixHttpServer:
    """Serves a :class:`Router` on a unix socket in a background thread."""

    def __init__(self, socket_path: Path, router: Router) -> None:
        self.socket_path = socket_path
        self.router = router
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()  # a stale socket from a previous run
        server = _Server(str(self.socket_path), _RequestHandler)
        server.router = self.router
        os.chmod(self.socket_path, 0o660)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.socket_path.unlink(missing_ok=True)
