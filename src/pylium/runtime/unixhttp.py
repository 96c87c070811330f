"""L4: a small JSON-over-HTTP server on a unix socket, for the agent's REST API.

Upstream's agent serves its API (``/v1/...``) on ``/var/run/cilium/cilium.sock``; the CNI
plugin and the CLI are its clients. Routes are registered as (method, path pattern) ->
handler; a handler gets a :class:`Request` and returns ``(status, json-able body)`` or raises
:class:`HttpError`. Requests are served on threads, so handlers must be thread-safe.

Every answer is JSON, errors included: ``{"error": message}``, with ``"field"`` naming the
offending parameter or body field (``labels``, ``addressing.ipv4``, ``query.owner``) when one
is to blame. A request the server cannot even parse (bad request line, bad Content-Length, a
body over :data:`MAX_BODY`, an unknown method) gets the same shape, and a client that stalls
mid-request is dropped after :data:`IDLE_TIMEOUT` seconds instead of holding a thread.
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

from pylium.base.errors import PyliumError, ValidationError, format_path

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
"""Largest request body accepted (an EndpointChangeRequest is a few hundred bytes)."""
IDLE_TIMEOUT = 30.0
"""Seconds a connection may wait for the rest of a request."""


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
    """Ends a request with ``status`` and ``{"error": message}`` (and ``"field"`` if given)."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, str]:
        return (
            {"error": self.message, "field": self.field} if self.field else {"error": self.message}
        )


def bad_field(field: str, message: str) -> HttpError:
    """A 400 naming the request's ``field`` (``query.x``, a body field path, a path parameter)."""
    return HttpError(400, f"{field}: {message}", field)


def body_object(request: Request) -> dict[str, Any]:
    """The request's body, which must be a JSON object."""
    if not isinstance(request.body, dict):
        raise bad_field("body", f"must be a JSON object, not {type(request.body).__name__}")
    return request.body


def field_of(body: Mapping[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    """``body[name]`` if it is a ``kind`` (None when absent and not required); a 400 naming
    the field otherwise. Booleans are not integers here."""
    if name not in body or body[name] is None:
        if required:
            raise bad_field(name, "is required")
        return None
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad_field(name, f"must be {kind.__name__}, not {type(value).__name__}")
    return value


def string_map(body: Mapping[str, Any], name: str) -> dict[str, str]:
    """``body[name]`` as a string -> string object ({} when absent)."""
    value = field_of(body, name, dict) or {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise bad_field(f"{name}.{key}", f"must be str, not {type(item).__name__}")
    return dict(value)


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
            except (ValueError, RecursionError) as err:
                return 400, {"error": f"request body is not JSON: {err}", "field": "body"}
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            request = Request(method, parts.path, match.groupdict(), query, body)
            try:
                return handler(request)
            except HttpError as err:
                return err.status, err.body()
            except ValidationError as err:
                where = err.problems[0][0].path if err.problems else ()
                answer = {"error": str(err)}
                return 400, answer | ({"field": format_path(where)} if where else {})
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
    timeout = IDLE_TIMEOUT

    def _handle(self) -> None:
        text = self.headers.get("Content-Length") or "0"
        length = int(text) if text.isascii() and text.isdecimal() else -1
        if length < 0 or length > MAX_BODY:
            status = 413 if length > MAX_BODY else 400
            self._answer(status, {"error": f"bad Content-Length {text!r}", "field": "body"})
            self.close_connection = True  # the body was not read: the stream is out of step
            return
        raw = self.rfile.read(length) if length else b""
        try:
            status, body = self.server.router.dispatch(self.command, self.path, raw)
        except Exception as err:  # a bug in a handler must not kill the server thread
            log.exception("API handler failed", extra={"path": self.path})
            status, body = 500, {"error": f"internal error: {err}"}
        self._answer(status, body)

    def _answer(self, status: int, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        """Every method goes to the router, which answers 405 (or 404) for the ones a path
        lacks, after reading the body (an early answer would break the client's send)."""
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (bad request line, unknown method, ...) in JSON too."""
        self.close_connection = True
        self.request_version = self.protocol_version  # a status line even for HTTP/0.9 garbage
        self._answer(code, {"error": message or self.responses.get(code, ("error",))[0]})

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
