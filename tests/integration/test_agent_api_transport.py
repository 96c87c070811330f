"""The agent API transport: a real unix-socket HTTP server and its client, over threads."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentAPIError, AgentClient
from pylium.base.errors import AgentUnavailable
from pylium.runtime.unixhttp import (
    HttpError,
    Request,
    Router,
    UnixHttpServer,
    body_object,
    field_of,
)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    counter = {"n": 0}
    lock = threading.Lock()

    def bump(req: Request) -> tuple[int, Any]:
        with lock:
            counter["n"] += int(req.query.get("by", "1"))
            return 201, {"n": counter["n"]}

    def echo(req: Request) -> tuple[int, Any]:
        if req.params["name"] == "missing":
            raise HttpError(404, "endpoint missing not found")
        return 200, {"name": req.params["name"], "body": req.body}

    router = Router()
    router.add("POST", "/v1/counter", bump)
    router.add("PUT", "/v1/endpoint/{name}", echo)
    srv = UnixHttpServer(tmp_path / "api.sock", router)
    srv.start()
    yield srv, counter
    srv.stop()


def test_round_trip_and_errors(server: Any) -> None:
    srv, _ = server
    client = AgentClient(srv.socket_path)
    assert client.request("PUT", "/v1/endpoint/ep1", body={"a": 1}) == {
        "name": "ep1",
        "body": {"a": 1},
    }
    with pytest.raises(AgentAPIError) as err:
        client.request("PUT", "/v1/endpoint/missing")
    assert err.value.status == 404 and "missing" in err.value.message
    with pytest.raises(AgentAPIError) as err:
        client.get("/v1/counter")
    assert err.value.status == 405
    with pytest.raises(AgentAPIError) as err:
        client.get("/v1/nothing")
    assert err.value.status == 404


def test_parallel_requests_all_served(server: Any) -> None:
    srv, counter = server
    client = AgentClient(srv.socket_path)
    results: list[int] = []

    def worker() -> None:
        for _ in range(10):
            results.append(client.post("/v1/counter", by="2")["n"])

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter["n"] == 100
    assert sorted(results) == list(range(2, 101, 2))


def test_unreachable_agent_is_named(tmp_path: Path) -> None:
    with pytest.raises(AgentUnavailable) as err:
        AgentClient(tmp_path / "nobody.sock", timeout=2).get("/v1/healthz")
    assert "nobody.sock" in str(err.value)


def raw(srv: Any, request: bytes) -> tuple[int, Any]:
    """One raw request; (status, JSON body) of the answer, read until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(srv.socket_path))
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v1/counter HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET /v1/counter HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /v1/counter HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{}", 413),
        (b"\x00\xff garbage\r\n\r\n", 400),
        (b"GET /v1/counter HTTP/9.9\r\n\r\n", 505),
        (b"BREW /v1/counter HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 405),
        (b"PUT /v1/endpoint/x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n[[[", 400),
    ],
)
def test_unparseable_requests_get_json_errors(
    server: Any, request_bytes: bytes, status: int
) -> None:
    srv, counter = server
    got, body = raw(srv, request_bytes)
    assert got == status and isinstance(body["error"], str) and body["error"], body
    assert counter["n"] == 0


def test_deep_json_and_field_errors(server: Any) -> None:
    srv, _ = server

    def fields(req: Request) -> tuple[int, Any]:
        body = body_object(req)
        return 200, {"n": field_of(body, "n", int, required=True)}

    srv.router.add("POST", "/v1/fields", fields)
    client = AgentClient(srv.socket_path)
    for body, field in (([1], "body"), ({}, "n"), ({"n": "1"}, "n"), ({"n": True}, "n")):
        with pytest.raises(AgentAPIError) as err:
            client.post("/v1/fields", body)
        assert err.value.status == 400 and err.value.message.startswith(field), err.value
    assert client.post("/v1/fields", {"n": 3}) == {"n": 3}
    deep = b"[" * 100_000 + b"]" * 100_000
    head = b"POST /v1/fields HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    status, answer = raw(srv, head % len(deep) + deep)
    assert status == 400 and answer["field"] == "body"
