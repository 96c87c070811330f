"""L5: ``pylium-hubble-relay``: Hubble Relay. Finds every node's Hubble server (the CiliumNodes'
InternalIP, port 4244) in the store and serves Hubble's Observer API for the whole cluster
(:4245 and a unix socket): GetFlows merged by time, ServerStatus summed with
connected/unavailable nodes, GetNodes per node.

As upstream's relay, it works on demand: a request fans out to the nodes and their answers are
merged; nodes are followed only while some client follows (and for ``IDLE_S`` after the last
request). An idle relay decodes nothing, so it costs no CPU while flows pass through the nodes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pylium import __version__
from pylium.adapters.hubbleapi.client import ObserverClient
from pylium.adapters.hubbleapi.server import NodeInfo, ObserverServer
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.base.errors import PyliumError
from pylium.core.hubble.flow import Flow
from pylium.core.hubble.ring import FlowRing, Query
from pylium.runtime.daemon import setup_logging, stop_on_signals

log = logging.getLogger("pylium.hubble.relay")

PEER_REFRESH = 5.0
DEFAULT_CAPACITY = 65535
IDLE_S = 30.0
"""Nodes stay followed this long after the last request."""
FOLLOW_CHUNK_S = 5.0
"""A follow stream is renewed this often, so that an idle follower notices and stops."""
STATUS_TTL_S = 1.0
"""ServerStatus answers are reused this long (a following client polls the status)."""
PEER_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PeerStatus:
    connected: bool
    num_flows: int = 0
    max_flows: int = 0
    seen_flows: int = 0
    uptime_ns: int = 0
    lost_events: int = 0
    error: str = ""


class Peer:
    """One node's Hubble server: asked on demand, followed into the relay's ring while a
    client follows."""

    def __init__(self, name: str, address: str, ring: FlowRing) -> None:
        self.name, self.address, self.ring = name, address, ring
        self.client = ObserverClient(address, timeout=PEER_TIMEOUT_S)
        self.removed = threading.Event()
        self._lock = threading.Lock()
        self._follower: threading.Thread | None = None
        self._status: tuple[float, PeerStatus] | None = None
        self.last_ns = 0
        """Time of the newest flow this peer's follower put into the ring."""

    def query(self, query: Query) -> list[Flow]:
        return list(
            self.client.flows(
                number=query.number,
                first=query.first,
                since_ns=query.since_ns,
                until_ns=query.until_ns,
                allow=query.allow,
                deny=query.deny,
            )
        )

    def status(self) -> PeerStatus:
        with self._lock:
            cached = self._status
        if cached and time.monotonic() - cached[0] < STATUS_TTL_S:
            return cached[1]
        try:
            s = self.client.status()
            status = PeerStatus(
                connected=True,
                num_flows=s.num_flows,
                max_flows=s.max_flows,
                seen_flows=s.seen_flows,
                uptime_ns=s.uptime_ns,
                lost_events=s.lost_events,
            )
        except PyliumError as err:
            status = PeerStatus(connected=False, error=str(err))
        with self._lock:
            self._status = (time.monotonic(), status)
        return status

    def follow(self, since_ns: int, demanded: Any) -> None:
        """Follow from ``since_ns`` while ``demanded()`` is true (idempotent)."""
        with self._lock:
            if self._follower is not None and self._follower.is_alive():
                return
            self.last_ns = max(self.last_ns, since_ns - 1)
            self._follower = threading.Thread(
                target=self._follow, args=(demanded,), name=f"peer:{self.name}", daemon=True
            )
            self._follower.start()

    def _follow(self, demanded: Any) -> None:
        while demanded() and not self.removed.is_set():
            try:
                # since: what came while the previous chunk's stream was being renewed.
                for flow in self.client.flows(
                    follow=True, since_ns=self.last_ns + 1, deadline=FOLLOW_CHUNK_S
                ):
                    if flow.time_ns > self.last_ns:
                        self.last_ns = flow.time_ns
                        self.ring.add([flow])
            except PyliumError as err:
                log.debug("following %s: %s", self.name, err)
                self.removed.wait(1.0)

    def close(self) -> None:
        self.removed.set()
        self.client.close()


class RelaySource:
    """The merged view the relay serves (a ``FlowSource`` of the Observer server)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.ring = FlowRing(capacity)
        self.peers: dict[str, Peer] = {}
        self.started = time.time()
        self._demand_until = 0.0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fan-out")

    def set_peers(self, wanted: dict[str, str]) -> None:
        for name, peer in list(self.peers.items()):
            if wanted.get(name) != peer.address:
                peer.close()
                del self.peers[name]
                log.info("peer removed", extra={"node": name})
        for name, address in wanted.items():
            if name not in self.peers:
                self.peers[name] = Peer(name, address, self.ring)
                log.info("peer added", extra={"node": name, "address": address})

    def _demanded(self) -> bool:
        return time.monotonic() < self._demand_until

    def _demand(self, since_ns: int) -> None:
        self._demand_until = time.monotonic() + IDLE_S
        for peer in list(self.peers.values()):
            peer.follow(since_ns, self._demanded)

    def _fan_out(self, query: Query) -> list[Flow]:
        peers = list(self.peers.values())
        flows: list[Flow] = []
        for peer, result in zip(peers, self._pool.map(_safe_query(query), peers), strict=True):
            if result is None:
                log.debug("peer %s did not answer", peer.name)
            else:
                flows.extend(result)
        return flows

    def read(self, query: Query) -> tuple[list[Flow], Any]:
        # Following starts before the nodes are asked, so nothing falls between the answer
        # and the stream; what both bring is told apart by each node's newest answered time.
        self._demand(time.time_ns())
        _, seq = self.ring.read(Query(number=1))
        flows = self._fan_out(query)
        flows.sort(key=lambda f: f.time_ns)
        if query.number:
            flows = flows[: query.number] if query.first else flows[-query.number :]
        marks: dict[str, int] = {}
        for flow in flows:
            marks[flow.node_name] = max(marks.get(flow.node_name, 0), flow.time_ns)
        return flows, (seq, marks)

    def after(self, query: Query, cursor: Any, timeout: float) -> tuple[list[Flow], Any]:
        self._demand(time.time_ns())
        seq, marks = cursor
        flows, seq = self.ring.after(query, seq, timeout)
        fresh = [f for f in flows if f.time_ns > marks.get(f.node_name, 0)]
        return fresh, (seq, marks)

    def _statuses(self) -> dict[str, PeerStatus]:
        peers = list(self.peers.values())
        return dict(zip((p.name for p in peers), self._pool.map(Peer.status, peers), strict=True))

    def status(self) -> dict[str, Any]:
        statuses = self._statuses()
        up = [s for s in statuses.values() if s.connected]
        return {
            "num_flows": sum(s.num_flows for s in up),
            "max_flows": sum(s.max_flows for s in up),
            "seen_flows": sum(s.seen_flows for s in up),
            "uptime_ns": int((time.time() - self.started) * 1e9),
            "num_connected_nodes": len(up),
            "lost_events": sum(s.lost_events for s in up),
            "unavailable_nodes": sorted(n for n, s in statuses.items() if not s.connected),
        }

    def nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo(
                name=name,
                address=self.peers[name].address,
                connected=s.connected,
                num_flows=s.num_flows,
                max_flows=s.max_flows,
                seen_flows=s.seen_flows,
                uptime_ns=s.uptime_ns,
            )
            for name, s in sorted(self._statuses().items())
        ]

    def close(self) -> None:
        for peer in self.peers.values():
            peer.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _safe_query(query: Query) -> Any:
    def ask(peer: Peer) -> list[Flow] | None:
        try:
            return peer.query(query)
        except PyliumError:
            return None

    return ask


def peers_from_store(client: ResourceClient, port: int) -> dict[str, str]:
    out = {}
    for cn in client.list("CiliumNode")[0]:
        for address in (cn.body.get("spec") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                out[cn.name] = f"{address['ip']}:{port}"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="pylium-hubble-relay", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--store", required=True, help="local:PATH or etcd:URL")
    parser.add_argument("--listen-address", default=":4245")
    parser.add_argument("--socket", type=Path, help="also serve on this unix socket")
    parser.add_argument("--peer-port", type=int, default=4244)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    stop = stop_on_signals()
    try:
        store = open_store(args.store)
        store.revision()
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    client = ResourceClient(store)
    source = RelaySource()
    host, _, port = args.listen_address.rpartition(":")
    addresses = [f"{host or '0.0.0.0'}:{port}"]
    if args.socket:
        args.socket.unlink(missing_ok=True)
        addresses.append(f"unix:{args.socket}")
    try:
        server = ObserverServer(source, addresses, version=__version__).start()
    except (OSError, RuntimeError) as err:
        print(f"Error: cannot listen on {', '.join(addresses)}: {err}", file=sys.stderr)
        sys.exit(1)
    log.info("hubble relay listening", extra={"addresses": ",".join(addresses)})
    try:
        while True:
            try:
                source.set_peers(peers_from_store(client, args.peer_port))
            except PyliumError as err:
                log.warning("listing nodes failed: %s", err)
            if stop.wait(PEER_REFRESH):
                break
    finally:
        server.stop()
        source.close()
        store.close()
    log.info("stopped")
