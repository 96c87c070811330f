"""Bad input to a running agent's API (issue 8): hypothesis sends requests over the agent's
unix socket — every route and method and some that do not exist, query strings and bodies of
every kind (bad JSON, wrong types, huge numbers and strings, deep nesting, unicode) — and
every answer must be JSON with a status, an error message for a refusal and, for a 400, the
field to blame; no request may crash the agent, hang (each has a deadline) or change anything
when refused: the node's IPs, endpoints, identity references, CiliumEndpoints and BPF maps are
compared with their state before after each one. Accepted requests that allocate (an IP, an
identity reference) are undone by the test and must leave the same state too. Requests the
HTTP layer cannot parse (bad request line, bad Content-Length, oversized body) are sent raw."""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylium.adapters.maps import endpoints as epmap
from pylium.adapters.maps import ipcache
from pylium.adapters.maps.base import open_pinned
from pylium.adapters.store import open_store

from .conftest import LabHandle

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(600)]

HELD, HELD_OWNER = "10.0.0.9", "default/held"
DEADLINE = 20.0
"""Seconds an answer may take on a loaded machine before the request counts as hung."""

text = st.text(max_size=20) | st.sampled_from(["", "0", "-1", "1e999", "NaN", "ü", "a" * 5000])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**30, -(2**63)])
    | st.floats(allow_nan=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
ENDPOINT_FIELDS = [
    "interface-name",
    "addressing",
    "mac",
    "labels",
    "k8s-namespace",
    "k8s-pod-name",
    "container-interface-name",
    "port-mappings",
]
near_endpoint = st.fixed_dictionaries(
    {},
    optional={
        "interface-name": st.sampled_from(["lxc0123456789a", "cilium_host", "lo", ""]) | text,
        "addressing": st.fixed_dictionaries(
            {}, optional={"ipv4": st.sampled_from(["10.0.0.9", "10.0.0.1", "::1"]) | text}
        )
        | json_values,
        "mac": st.sampled_from(["02:00:00:00:00:01", "zz"]) | json_values,
        "labels": st.dictionaries(text, text | st.integers(), max_size=3) | json_values,
        "k8s-namespace": text | json_values,
        "k8s-pod-name": text | json_values,
        "port-mappings": json_values,
    },
)
near_identity = st.fixed_dictionaries(
    {},
    optional={
        "labels": st.lists(st.sampled_from(["k8s:app=fuzz", "", "=x", "k8s:"]) | text)
        | json_values,
        "pod-labels": st.dictionaries(text, text | st.integers(), max_size=3) | json_values,
        "namespace": text | json_values,
        "namespace-labels": json_values,
        "service-account": text | json_values,
    },
)
DEEP = "[" * 100_000 + "]" * 100_000
bodies = st.one_of(
    st.none(),
    json_values.map(json.dumps),
    near_endpoint.map(json.dumps),
    near_identity.map(json.dumps),
    st.sampled_from(["{", "nul\x00", '{"a": 1', "\udcff", DEEP, '"' + "x" * 200_000 + '"']),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
path_param = st.sampled_from(["10.0.0.9", "10.0.0.1", "::1", "256", "x", "%2F", "١٢"]) | text
paths = st.one_of(
    st.sampled_from(
        [
            "/v1/healthz",
            "/v1/ipam",
            "/v1/endpoint",
            "/v1/policy",
            "/v1/flows",
            "/v1/hubble/status",
            "/v1/identity",
            "/v1/service",
            "/v1/status",
            "/v1/health",
            "/v1/metrics",
            "/v1/nothing",
            "/",
            "//v1/ipam",
        ]
    ),
    st.tuples(st.sampled_from(["/v1/ipam/", "/v1/endpoint/", "/v1/identity/"]), path_param).map(
        lambda t: t[0] + quote(t[1], safe="")
    ),
)
ROUTES = [
    ("POST", "/v1/ipam"),
    ("POST", "/v1/ipam/"),
    ("GET", "/v1/ipam/"),
    ("DELETE", "/v1/ipam/"),
    ("PUT", "/v1/endpoint/"),
    ("GET", "/v1/endpoint/"),
    ("DELETE", "/v1/endpoint/"),
    ("POST", "/v1/identity"),
    ("DELETE", "/v1/identity/"),
    ("GET", "/v1/flows"),
    ("GET", "/v1/ipam"),
    ("GET", "/v1/endpoint"),
]
"""The agent's routes (a trailing / takes a path parameter): most requests aim at one."""
routes = st.tuples(st.sampled_from(ROUTES), path_param).map(
    lambda r: (r[0][0], r[0][1] + quote(r[1], safe="") if r[0][1].endswith("/") else r[0][1])
)
QUERY_KEYS = ["owner", "pool", "number", "first", "since", "until", "allow", "deny", "after"]
queries = st.dictionaries(st.sampled_from(QUERY_KEYS) | text, text, max_size=4)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=DEADLINE)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(self.path)


def call(sock: Path, method: str, target: str, body: str | None) -> tuple[int, Any]:
    conn = UnixHTTP(sock)
    try:
        payload = None if body is None else body.encode("utf-8", "surrogatepass")
        conn.request(method, target, body=payload)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    return response.status, json.loads(raw) if raw else None


def raw_call(sock: Path, request: bytes) -> tuple[int, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(DEADLINE)
        s.connect(str(sock))
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def assert_structured(status: int, answer: Any, what: str) -> None:
    assert 200 <= status < 500 or status == 503, f"{what}: {status} {answer}"  # never a 500
    if status >= 400:
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), what
        assert answer["error"], what
        if status == 400:
            assert answer.get("field"), f"{what}: a 400 names no field: {answer}"


def test_agent_api_refuses_bad_requests_without_a_change(lab: LabHandle) -> None:
    lab.up("--nodes", "1")
    agent = lab.wait_agent_ready("n1")
    sock = lab.dir("n1") / "pylium.sock"
    pins = lab.bpf_pins("n1")
    agent_pid = lab.pids["agent-n1"]
    store = open_store(lab.store_url)

    def snapshot() -> dict[str, Any]:
        return {
            "ipam": agent.get("/v1/ipam"),
            "endpoints": agent.get("/v1/endpoint"),
            "store": sorted(
                (kv.key, kv.value)
                for prefix in ("identities/refs/", "endpoints/", "ipam/n1/")
                for kv in store.list(prefix).items
            ),
            "ceps": store.list("resources/CiliumEndpoint/").items,
            "endpoint-map": list(
                epmap.EndpointsMap(open_pinned(str(pins / epmap.NAME))).raw.iter_keys()
            ),
            "ipcache": ipcache.IPCacheMap(open_pinned(str(pins / ipcache.NAME))).dump(),
        }

    seen: dict[int, int] = {}

    def undo(method: str, path: str, answer: Any) -> None:
        """What an accepted request allocated goes back (and the held IP is held again)."""
        if method == "POST" and path.startswith("/v1/ipam") and isinstance(answer, dict):
            agent.delete(f"/v1/ipam/{answer['address']['ipv4']}")
        if method == "POST" and path == "/v1/identity":
            agent.delete(f"/v1/identity/{answer['id']}")
        if method == "DELETE" and path == f"/v1/ipam/{HELD}" and answer.get("released"):
            agent.post(f"/v1/ipam/{HELD}", owner=HELD_OWNER)

    try:
        # An IP held as a pod's would be, so that endpoint requests naming it get past the
        # IPAM check to the other fields (and the device look-up).
        agent.post(f"/v1/ipam/{HELD}", owner=HELD_OWNER)
        # The node's own ipcache entries come from a controller after the datapath is up.
        before = lab.wait_for(
            "the node's ipcache entries", lambda: snapshot()["ipcache"] and snapshot(), 60
        )

        @settings(
            max_examples=int(os.environ.get("PYLIUM_FUZZ_EXAMPLES", "250")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            route=routes | st.tuples(methods, paths) | routes,
            query=queries,
            body=bodies,
        )
        def one(route: tuple[str, str], query: dict[str, str], body: str | None) -> None:
            method, path = route
            target = path + (f"?{urlencode(query)}" if query else "")
            what = f"{method} {target[:200]} body {None if body is None else body[:200]!r}"
            status, answer = call(sock, method, target, body)
            seen[status] = seen.get(status, 0) + 1
            assert_structured(status, answer, what)
            if status < 300:
                undo(method, path, answer)
            assert snapshot() == before, f"{what} changed the node ({status} {answer})"

        one()
        for request in (
            b"GET /v1/healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            b"GET /v1/healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"PUT /v1/endpoint/x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{}",
            b"\x00\xff garbage\r\n\r\n",
            b"GET /v1/healthz HTTP/9.9\r\n\r\n",
            b"GET " + b"/v1/" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        ):
            status, answer = raw_call(sock, request)
            assert (400 <= status < 500 or status == 505) and answer["error"], (
                request[:60],
                status,
                answer,
            )
        assert snapshot() == before
        assert os.path.exists(f"/proc/{agent_pid}") and lab.pids["agent-n1"] == agent_pid
        assert agent.get("/v1/healthz")["datapath"]["state"] == "Ok"
        print(f"\nagent API fuzz: answers by status {dict(sorted(seen.items()))}")
        assert seen.get(400, 0) > 10 and seen.get(200, 0) > 10, seen  # both kinds were tried
    finally:
        store.close()
