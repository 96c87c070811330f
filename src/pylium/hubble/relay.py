"""L5: ``pylium-hubble-relay``: Hubble Relay. Finds every node's Hubble server (the CiliumNodes'
InternalIP, port 4244) in the store, follows each one's flows into one merged ring, and serves
Hubble's Observer API for the whole cluster (:4245 and a unix socket): GetFlows merged by
time, ServerStatus summed with connected/unavailable nodes, GetNodes per node.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
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


class Peer:
    """One node's Hubble server, followed in a thread for as long as the node exists."""

    def __init__(self, name: str, address: str, ring: FlowRing) -> None:
        self.name, self.address, self.ring = name, address, ring
        self.connected = False
        self.error = ""
        self.lost = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"peer:{name}", daemon=True)

    def _lost(self, count: int) -> None:
        self.lost += count

    def _run(self) -> None:
        history = 4095  # the first connection brings the node's ring along
        while not self.stop.is_set():
            client = ObserverClient(self.address)
            try:
                self.connected = True
                self.error = ""
                for flow in client.flows(number=history, follow=True, on_lost=self._lost):
                    self.ring.add([flow])
                    if self.stop.is_set():
                        break
            except PyliumError as err:
                self.error = str(err)
            finally:
                self.connected = False
                client.close()
            history = 0  # after a reconnect only new flows (no duplicates)
            self.stop.wait(1.0)


class RelaySource:
    """The merged view the relay serves (a ``FlowSource`` of the Observer server)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.ring = FlowRing(capacity)
        self.peers: dict[str, Peer] = {}
        self.started = time.time()

    def set_peers(self, wanted: dict[str, str]) -> None:
        for name, peer in list(self.peers.items()):
            if wanted.get(name) != peer.address:
                peer.stop.set()
                del self.peers[name]
                log.info("peer removed", extra={"node": name})
        for name, address in wanted.items():
            if name not in self.peers:
                peer = Peer(name, address, self.ring)
                self.peers[name] = peer
                peer.thread.start()
                log.info("peer added", extra={"node": name, "address": address})

    def read(self, query: Query) -> tuple[list[Flow], Any]:
        flows, seq = self.ring.read(
            Query(
                since_ns=query.since_ns, until_ns=query.until_ns, allow=query.allow, deny=query.deny
            )
        )
        flows.sort(key=lambda f: f.time_ns)
        if query.number:
            flows = flows[: query.number] if query.first else flows[-query.number :]
        return flows, seq

    def after(self, query: Query, cursor: Any, timeout: float) -> tuple[list[Flow], Any]:
        return self.ring.after(query, int(cursor), timeout)

    def status(self) -> dict[str, Any]:
        unavailable = sorted(n for n, p in self.peers.items() if not p.connected)
        return {
            "num_flows": len(self.ring),
            "max_flows": self.ring.capacity,
            "seen_flows": self.ring.seen,
            "uptime_ns": int((time.time() - self.started) * 1e9),
            "num_connected_nodes": len(self.peers) - len(unavailable),
            "lost_events": sum(p.lost for p in self.peers.values()),
            "unavailable_nodes": unavailable,
        }

    def nodes(self) -> list[NodeInfo]:
        return [
            NodeInfo(name=n, address=p.address, connected=p.connected)
            for n, p in sorted(self.peers.items())
        ]


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
        for peer in source.peers.values():
            peer.stop.set()
        store.close()
    log.info("stopped")
