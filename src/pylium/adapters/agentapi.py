"""L3: client of the agent's REST API on its unix socket (used by the CNI plugin and the CLI).

Speaks plain HTTP/1.1 with JSON bodies over ``AF_UNIX``; every failure to reach the agent is
an :class:`~pylium.base.errors.AgentUnavailable` naming the socket, and every error answer an
:class:`AgentAPIError` carrying the status and the agent's message.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pylium.base.errors import AgentUnavailable, PyliumError

DEFAULT_TIMEOUT = 30.0
"""Upstream's CNI plugin waits 30 s for the agent."""


class AgentAPIError(PyliumError):
    def __init__(self, status: int, message: str, path: str) -> None:
        self.status = status
        self.message = message
        self.path = path
        super().__init__(f"agent API {path}: {status}: {message}")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class AgentClient:
    def __init__(self, socket_path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one request; returns the decoded JSON answer (None when empty)."""
        target = quote(path) + (f"?{urlencode(query)}" if query else "")
        payload = b"" if body is None else json.dumps(body).encode()
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            try:
                conn.request(
                    method, target, body=payload, headers={"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as err:
                raise AgentUnavailable(
                    f"agent API at {self.socket_path} unreachable: {err}"
                ) from err
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError as err:
            raise AgentAPIError(response.status, f"answer is not JSON: {err}", path) from err
        if response.status >= 400:
            message = data.get("error", "") if isinstance(data, dict) else str(data)
            raise AgentAPIError(response.status, message, path)
        return data

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any = None, **query: str) -> Any:
        return self.request("POST", path, query=query or None, body=body)

    def delete(self, path: str, body: Any = None, **query: str) -> Any:
        return self.request("DELETE", path, query=query or None, body=body)
