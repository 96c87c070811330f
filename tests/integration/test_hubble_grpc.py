"""Hubble's Observer gRPC API over a real server and client on a unix socket: flows with their
fields survive the protobuf round trip, filters travel as Hubble's FlowFilters, following
streams new flows and reports datapath losses as LostEvents, ServerStatus and GetNodes answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pylium.adapters.hubbleapi.client import ObserverClient
from pylium.adapters.hubbleapi.server import ObserverServer, RingSource
from pylium.core.hubble.filters import FlowFilter
from pylium.core.hubble.flow import Endpoint, Flow, PolicyRef, TrafficDirection, Verdict
from pylium.core.hubble.ring import FlowRing


def flow(port: int, verdict: Verdict = Verdict.FORWARDED) -> Flow:
    return Flow(
        time_ns=1_796_000_000_000_000_000 + port,
        node_name="n1",
        verdict=verdict,
        event_type=1 if verdict is Verdict.DROPPED else 4,
        source_ip="10.0.1.2",
        destination_ip="10.0.0.2",
        proto=6,
        source_port=port,
        destination_port=8080,
        tcp_flags=0x12,
        source=Endpoint(257, ("k8s:app=client",), 3, "default", "client", "default"),
        destination=Endpoint(256, ("k8s:app=server",), 1, "default", "server", "default"),
        traffic_direction=TrafficDirection.INGRESS,
        is_reply=False,
        drop_reason=133 if verdict is Verdict.DROPPED else 0,
        denied_by=(PolicyRef("web", "default", "CiliumNetworkPolicy"),)
        if verdict is Verdict.DROPPED
        else (),
    )


def test_observer_api_round_trip(tmp_path: Path) -> None:
    ring = FlowRing(4095)
    started = time.time()

    def status() -> dict[str, object]:
        return {
            "num_flows": len(ring),
            "max_flows": ring.capacity,
            "seen_flows": ring.seen,
            "lost_events": ring.lost,
            "uptime_ns": int((time.time() - started) * 1e9),
        }

    source = RingSource("n1", "192.0.2.11:4244", ring.read, ring.after, status)
    sock = tmp_path / "hubble.sock"
    server = ObserverServer(source, [f"unix:{sock}"], version="test").start()
    try:
        ring.add([flow(1000), flow(1001, Verdict.DROPPED), flow(1002)])
        with ObserverClient(f"unix:{sock}") as client:
            got = list(client.flows(number=10))
            assert got == [flow(1000), flow(1001, Verdict.DROPPED), flow(1002)]
            dropped = list(client.flows(allow=[FlowFilter(verdict=(Verdict.DROPPED,))]))
            assert [f.source_port for f in dropped] == [1001]
            assert dropped[0].denied_by == (PolicyRef("web", "default", "CiliumNetworkPolicy"),)
            assert [f.source_port for f in client.flows(number=1, first=True)] == [1000]
            status_msg = client.status()
            assert (status_msg.num_flows, status_msg.max_flows, status_msg.version) == (
                3,
                4095,
                "test",
            )
            assert [(n.name, n.address) for n in client.nodes()] == [("n1", "192.0.2.11:4244")]

            lost: list[int] = []

            def later() -> None:
                time.sleep(0.5)
                ring.add([flow(2000)])
                ring.add_lost(5)
                time.sleep(1.2)
                ring.add([flow(2001)])

            threading.Thread(target=later, daemon=True).start()
            followed = list(client.flows(follow=True, deadline=3.5, on_lost=lost.append))
            assert [f.source_port for f in followed] == [2000, 2001]  # no history replayed
            assert lost == [5]
            assert client.status().lost_events == 5
    finally:
        server.stop()
