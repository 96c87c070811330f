"""The agent API transport: a real unix-socket HTTP server and its client, over threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentAPIError, AgentClient
from pylium.base.errors import AgentUnavailable
from pylium.runtime.unixhttp import HttpError, Request, Router, UnixHttpServer


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
