"""Hubble's Observer gRPC API over a real server and client on a unix socket: flows with their
fields survive the protobuf round trip, filters travel as Hubble's FlowFilters, following
streams new flows and reports datapath losses as LostEvents, ServerStatus and GetNodes answer.
The relay over two such node servers: history merged by time, following delivers each new flow
once, ServerStatus and GetNodes sum and list the nodes, an unreachable node is reported, and an
idle relay follows nobody."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylium.adapters.hubbleapi.client import ObserverClient
from pylium.adapters.hubbleapi.server import ObserverServer, RingSource
from pylium.core.hubble.filters import FlowFilter
from pylium.core.hubble.flow import Endpoint, Flow, PolicyRef, TrafficDirection, Verdict
from pylium.core.hubble.ring import FlowRing, Query
from pylium.hubble import relay


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


def _node(name: str, tmp_path: Path) -> tuple[FlowRing, ObserverServer, str]:
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

    sock = tmp_path / f"{name}.sock"
    source = RingSource(name, f"unix:{sock}", ring.read, ring.after, status)
    return ring, ObserverServer(source, [f"unix:{sock}"], version="test").start(), f"unix:{sock}"


def _at(name: str, port: int, time_ns: int) -> Flow:
    return dataclasses.replace(flow(port), node_name=name, time_ns=time_ns)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, tuple[FlowRing, str]]]:
    made = {name: _node(name, tmp_path) for name in ("n1", "n2")}
    yield {name: (ring, address) for name, (ring, _, address) in made.items()}
    for _, server, _ in made.values():
        server.stop()


def test_relay_merges_follows_once_and_reports_nodes(
    nodes: dict[str, tuple[FlowRing, str]], tmp_path: Path
) -> None:
    now = time.time_ns()
    (ring1, addr1), (ring2, addr2) = nodes["n1"], nodes["n2"]
    ring1.add([_at("n1", 1000, now - 3_000), _at("n1", 1002, now - 1_000)])
    ring2.add([_at("n2", 1001, now - 2_000)])
    ring2.add_lost(7)
    source = relay.RelaySource()
    source.set_peers({"n1": addr1, "n2": addr2})
    sock = tmp_path / "relay.sock"
    server = ObserverServer(source, [f"unix:{sock}"], version="test").start()
    try:
        with ObserverClient(f"unix:{sock}") as client:
            history = list(client.flows(number=10))
            assert [(f.node_name, f.source_port) for f in history] == [
                ("n1", 1000),
                ("n2", 1001),
                ("n1", 1002),
            ]
            assert [f.source_port for f in client.flows(number=2)] == [1001, 1002]
            status = client.status()
            assert status.num_connected_nodes.value == 2
            assert (status.num_flows, status.max_flows, status.lost_events) == (3, 8190, 7)
            assert sorted((n.name, n.state, n.num_flows) for n in client.nodes()) == [
                ("n1", 1, 2),
                ("n2", 1, 1),
            ]

            # Following: flows made after the request arrive once each, from both nodes.
            followed = client.flows(follow=True, number=1, deadline=8.0)
            first = next(followed)
            assert first.source_port == 1002
            later = time.time_ns()
            ring2.add([_at("n2", 2001, later)])
            ring1.add([_at("n1", 2002, later + 1)])
            got = []
            for f in followed:
                got.append((f.node_name, f.source_port))
                if len(got) == 2:
                    break
            assert sorted(got) == [("n1", 2002), ("n2", 2001)]
    finally:
        server.stop()
        source.close()


def test_unreachable_node_is_reported_and_idle_relay_follows_nobody(
    nodes: dict[str, tuple[FlowRing, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "IDLE_S", 0.5)
    monkeypatch.setattr(relay, "FOLLOW_CHUNK_S", 0.5)
    ring1, addr1 = nodes["n1"]
    ring1.add([_at("n1", 1000, time.time_ns())])
    source = relay.RelaySource()
    source.set_peers({"n1": addr1, "gone": f"unix:{tmp_path / 'nobody.sock'}"})
    try:
        status = source.status()
        assert status["num_connected_nodes"] == 1 and status["unavailable_nodes"] == ["gone"]
        flows, _ = source.read(Query(number=5))
        assert [f.source_port for f in flows] == [1000]
        assert source.ring.seen == 0  # the answer came from the node, not a copy kept here
        deadline = time.monotonic() + 10
        followers = [p._follower for p in source.peers.values()]
        while any(t is not None and t.is_alive() for t in followers):
            assert time.monotonic() < deadline, "followers still running after the idle time"
            time.sleep(0.2)
        ring1.add([_at("n1", 1001, time.time_ns())])
        time.sleep(1.0)
        assert source.ring.seen == 0  # nobody asked: nothing decoded
    finally:
        source.close()
