"""L6: the Hubble UI for a lab (``pylium hubble ui``): a small HTTP server that follows every
node's agent (``GET /v1/flows`` long polls on the agents' sockets) into one bounded buffer and
serves a page with the service map, a live flow table with filters and a detail panel showing
the deciding policy.

Routes: ``/`` (the page), ``/static/<file>`` (its script and style, shipped in the package),
``/vendor/cytoscape.min.js`` (from the npm install ``scripts/setup.sh`` makes under ``ui/``),
``/api/status`` (lab, nodes and whether each is followed, namespaces, the lab's pods),
``/api/flows?after=SEQ&namespace=&verdict=&pod=&limit=`` (newest last, with the sequence
number to continue from) and ``/api/map?namespace=``. Hubble UI's port is 12000.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pylium.adapters.agentapi import AgentClient
from pylium.base.errors import LabError, PyliumError
from pylium.core.hubble.flow import Flow, flow_from_json
from pylium.core.hubble.servicemap import flow_matches, namespaces, service_map
from pylium.lab import cluster

log = logging.getLogger(__name__)

DEFAULT_PORT = 12000
BUFFER = 8192
"""Flows kept across the cluster (the newest)."""
STATIC = Path(__file__).with_name("ui")
VENDOR_ENV = "PYLIUM_UI_VENDOR"
"""Overrides where the npm packages live (a ``node_modules`` directory)."""
VENDOR_FILES = {"cytoscape.min.js": "cytoscape/dist/cytoscape.min.js"}


def vendor_dir() -> Path:
    """``$PYLIUM_UI_VENDOR``, else ``ui/node_modules`` of the source tree."""
    if os.environ.get(VENDOR_ENV):
        return Path(os.environ[VENDOR_ENV])
    return Path(__file__).resolve().parents[3] / "ui" / "node_modules"


class FlowCollector:
    """Follows each node's flow ring: the last ``initial`` flows, then every new one."""

    def __init__(self, sockets: dict[str, Path], *, capacity: int = BUFFER) -> None:
        self.sockets = sockets
        self._flows: deque[tuple[int, Flow]] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self.seq = 0
        self.nodes: dict[str, dict[str, Any]] = {
            n: {"connected": False, "error": ""} for n in sockets
        }

    def _add(self, flows: list[Flow]) -> None:
        with self._cond:
            for flow in sorted(flows, key=lambda f: f.time_ns):
                self.seq += 1
                self._flows.append((self.seq, flow))
            self._cond.notify_all()

    def _follow(self, node: str, sock: Path, stop: threading.Event, initial: int) -> None:
        client = AgentClient(sock, timeout=15)
        seq: int | None = None
        while not stop.is_set():
            try:
                if seq is None:
                    answer = client.get("/v1/flows", number=str(initial))
                else:
                    answer = client.get("/v1/flows", after=str(seq), wait="1")
            except PyliumError as err:
                self.nodes[node] = {"connected": False, "error": str(err)}
                stop.wait(1.0)
                continue
            self.nodes[node] = {"connected": True, "error": ""}
            if seq is not None and int(answer["seq"]) < seq:
                seq = None  # the agent restarted with a fresh ring: read it from the start
                continue
            seq = int(answer["seq"])
            flows = [flow_from_json(f) for f in answer.get("flows") or []]
            if flows:
                self._add(flows)

    def start(self, stop: threading.Event, initial: int = 1000) -> FlowCollector:
        for node, sock in self.sockets.items():
            threading.Thread(
                target=self._follow,
                args=(node, sock, stop, initial),
                name=f"ui-follow-{node}",
                daemon=True,
            ).start()
        return self

    def snapshot(self, after: int = 0) -> tuple[list[tuple[int, Flow]], int]:
        with self._cond:
            return [(s, f) for s, f in self._flows if s > after], self.seq


def _flow_json(seq: int, flow: Flow) -> dict[str, Any]:
    return {"seq": seq, **flow.to_json()}


class UIApp:
    """The routes, over a collector and the lab's state."""

    def __init__(self, lab: str, collector: FlowCollector) -> None:
        self.lab = lab
        self.collector = collector

    def status(self, q: dict[str, str]) -> dict[str, Any]:
        state = cluster.load_state(self.lab)
        pods = []
        if state is not None:
            for key, info in sorted(state.pods.items()):
                namespace, _, name = key.partition("/")
                pods.append(
                    {
                        "namespace": namespace,
                        "name": name,
                        "node": info.get("node", ""),
                        "ip": info.get("ip", ""),
                    }
                )
        flows, seq = self.collector.snapshot()
        spaces = set(namespaces(f for _, f in flows)) | {p["namespace"] for p in pods}
        return {
            "lab": self.lab,
            "nodes": self.collector.nodes,
            "namespaces": sorted(spaces),
            "pods": pods,
            "seq": seq,
        }

    def flows(self, q: dict[str, str]) -> dict[str, Any]:
        after = int(q.get("after", "0") or 0)
        limit = max(1, min(int(q.get("limit", "500") or 500), BUFFER))
        flows, seq = self.collector.snapshot(after)
        chosen = [
            (s, f)
            for s, f in flows
            if flow_matches(
                f,
                namespace=q.get("namespace", ""),
                verdict=q.get("verdict", ""),
                pod=q.get("pod", ""),
            )
        ][-limit:]
        return {"seq": seq, "flows": [_flow_json(s, f) for s, f in chosen]}

    def map(self, q: dict[str, str]) -> dict[str, Any]:
        flows, _ = self.collector.snapshot()
        return service_map((f for _, f in flows), q.get("namespace", ""))

    def routes(self) -> dict[str, Callable[[dict[str, str]], dict[str, Any]]]:
        return {"/api/status": self.status, "/api/flows": self.flows, "/api/map": self.map}


def _handler(app: UIApp) -> type[BaseHTTPRequestHandler]:
    routes = app.routes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "pylium-hubble-ui"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _file(self, path: Path) -> None:
            try:
                body = path.read_bytes()
            except OSError:
                self._send(404, f"{path.name} not found\n".encode(), "text/plain")
                return
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._send(200, body, kind)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if parts.path in ("/", "/index.html"):
                self._file(STATIC / "index.html")
            elif parts.path.startswith("/static/"):
                name = parts.path.removeprefix("/static/")
                if "/" in name or name.startswith("."):
                    self._send(404, b"not found\n", "text/plain")
                else:
                    self._file(STATIC / name)
            elif parts.path.startswith("/vendor/"):
                rel = VENDOR_FILES.get(parts.path.removeprefix("/vendor/"))
                if rel is None:
                    self._send(404, b"not found\n", "text/plain")
                else:
                    self._file(vendor_dir() / rel)
            elif parts.path in routes:
                try:
                    answer = routes[parts.path](q)
                except (ValueError, PyliumError) as err:
                    self._send(400, json.dumps({"error": str(err)}).encode(), "application/json")
                    return
                self._send(200, json.dumps(answer).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler


def lab_sockets(lab: str) -> dict[str, Path]:
    state = cluster.load_state(lab)
    if state is None:
        raise LabError(f"no lab named {lab!r}")
    return {node: cluster.agent_socket(node, lab) for node in sorted(state.nodes)}


def serve(
    lab: str, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, stop: threading.Event
) -> ThreadingHTTPServer:
    """Start following the lab's nodes and serving the page (on a daemon thread); the caller
    shuts the returned server down."""
    collector = FlowCollector(lab_sockets(lab)).start(stop)
    server = ThreadingHTTPServer((host, port), _handler(UIApp(lab, collector)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="hubble-ui", daemon=True).start()
    return server
