"""The agent's Hubble observer keeps each drained batch as raw ring-buffer records and decodes a
record only when something reads it: the flow shows the endpoints, identity labels and deciding
policies of the moment the batch was drained, even after they changed; only the drops and
verdicts are decoded at drain time (to attribute them); a read of the last or first N decodes
those N; what was decoded once is not decoded again; the ring trims across batches.
CiliumEndpoints in a real (SQLite) store."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylium.adapters.maps import events
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.sqlite import SqliteStore
from pylium.agent.hubble import HubbleObserver
from pylium.core.hubble.flow import (
    Decided,
    Endpoint,
    Flow,
    PolicyRef,
    TrafficDirection,
    Verdict,
    flow_from_event,
)
from pylium.core.hubble.ring import Query
from pylium.core.policy.peers import Direction
from pylium.model.resource import Resource

CLIENT, SERVER, WORLD = "10.0.0.3", "10.0.0.2", "1.2.3.4"
CIDR_IDENTITY = 16777217
DENY = PolicyRef("deny-web", "default", "CiliumNetworkPolicy")
OTHER = PolicyRef("other", "default", "CiliumNetworkPolicy")


class Counting(events.Records):
    """Records that note which indexes were decoded."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.decoded: list[int] = []

    def event(self, index: int) -> events.FlowEvent:
        self.decoded.append(index)
        return super().event(index)


def record(
    *,
    type_: int = events.TYPE_TRACE,
    reason: int = events.CT_NEW,
    direction: int = 2,
    saddr: str = CLIENT,
    daddr: str = SERVER,
    src_identity: int = 257,
    dst_identity: int = 256,
    sport: int = 40000,
) -> bytes:
    """One record as the ring buffer holds it: the kernel's header, the event, padding."""
    event = events.EVENT.struct.pack(
        1_000 + sport,
        type_,
        reason,
        0,
        direction,
        6,
        0x02,
        0,
        7,
        src_identity,
        dst_identity,
        ipaddress.IPv4Address(saddr).packed,
        ipaddress.IPv4Address(daddr).packed,
        sport,
        8080,
        74,
        0,
    )
    return (struct.pack("=II", len(event), 0) + event).ljust(events.RECORD, b"\0")


def cep(name: str, ip: str, identity: int, endpoint_id: int) -> Resource:
    return Resource(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "status": {
                "id": endpoint_id,
                "identity": {"id": identity, "labels": [f"k8s:app={name}"]},
                "networking": {"addressing": [{"ipv4": ip}], "node": "n1"},
            },
        }
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[ResourceClient]:
    store = SqliteStore(tmp_path / "store.sqlite")
    try:
        yield ResourceClient(store)
    finally:
        store.close()


def test_flows_carry_the_state_of_the_moment_they_were_drained(client: ResourceClient) -> None:
    labels = {CIDR_IDENTITY: frozenset({"cidr:1.2.3.4/32", "reserved:world"})}
    asked: list[tuple[int, Direction, int, int, int]] = []
    deciding = {"now": DENY}

    def attribution(ep: int, direction: Direction, remote: int, proto: int, port: int) -> Decided:
        asked.append((ep, direction, remote, proto, port))
        return (), (deciding["now"],)

    observer = HubbleObserver(
        node="n1", cluster="c1", capacity=4095, attribution=attribution, labels_of=labels.get
    )
    client.apply([cep("client", CLIENT, 257, 2), cep("server", SERVER, 256, 1)])
    observer.refresh(client, {ipaddress.IPv4Address(SERVER): 1})
    batch = Counting(
        record()
        + record(saddr=SERVER, daddr=WORLD, src_identity=256, dst_identity=CIDR_IDENTITY)
        + record(type_=events.TYPE_POLICY_VERDICT, reason=133, direction=1)
    )
    observer.take(batch)
    assert batch.decoded == [2]  # the verdict only, to ask which policy decided
    assert asked == [(1, Direction.INGRESS, 257, 6, 8080)]
    assert observer.ring.seen == 3 and len(observer.ring) == 3

    # Everything changes before anyone reads: the client pod goes, the CIDR identity is
    # released, another policy would decide now.
    client.delete("CiliumEndpoint", "client", "default")
    observer.refresh(client, {ipaddress.IPv4Address(SERVER): 1})
    del labels[CIDR_IDENTITY]
    deciding["now"] = OTHER

    flows, seq = observer.ring.read(Query())
    assert seq == 3 and batch.decoded == [2, 0, 1, 2]
    to_server, to_world, verdict = flows
    assert to_server.source == Endpoint(257, ("k8s:app=client",), 2, "default", "client", "c1")
    assert to_server.destination.pod_name == "server"
    assert to_world.destination == Endpoint(CIDR_IDENTITY, ("cidr:1.2.3.4/32", "reserved:world"))
    assert (verdict.verdict, verdict.traffic_direction) == (
        Verdict.DROPPED,
        TrafficDirection.INGRESS,
    )
    assert verdict.denied_by == (DENY,) and verdict.allowed_by == ()
    assert len(asked) == 1  # never asked again when read

    # The same records drained now show the state of now.
    observer.take(events.Records(batch.data))
    later = observer.ring.read(Query(number=3))[0]
    assert later[0].source == Endpoint(257)  # no pod, identity without known labels
    assert later[1].destination == Endpoint(CIDR_IDENTITY)
    assert later[2].denied_by == (OTHER,)

    # A record read is the flow the old per-event pipeline built from the decoded event.
    server = Endpoint(256, ("k8s:app=server",), 1, "default", "server", "c1")
    expected = flow_from_event(
        events.decode(batch.data[events.HEADER : events.HEADER + events.EVENT.size]),
        node="n1",
        boot_offset_ns=later[0].time_ns - events.Records(batch.data).event(0).ts,
        lookup=lambda ip, identity: {SERVER: server}.get(str(ip), Endpoint(identity)),
    )
    assert later[0] == expected


def sports(flows: list[Flow]) -> list[int]:
    return [f.source_port for f in flows]


def test_reads_decode_only_the_flows_asked_for_and_trim_across_batches() -> None:
    observer = HubbleObserver(
        node="n1",
        cluster="c1",
        capacity=7,
        attribution=lambda *_: ((), ()),
        labels_of=lambda _: None,
    )
    batches = [Counting(b"".join(record(sport=3 * b + i) for i in range(3))) for b in range(3)]
    for batch in batches:
        observer.take(batch)
    ring = observer.ring
    assert (len(ring), ring.seen) == (7, 9)
    assert all(b.decoded == [] for b in batches)  # traces: nothing decoded when drained

    last, seq = ring.read(Query(number=2))
    assert sports(last) == [7, 8] and seq == 9
    assert [b.decoded for b in batches] == [[], [], [1, 2]]
    first, _ = ring.read(Query(number=2, first=True))
    assert sports(first) == [2, 3]  # 0 and 1 were pushed out
    assert [b.decoded for b in batches] == [[2], [0], [1, 2]]

    everything, _ = ring.read(Query())
    assert sports(everything) == list(range(2, 9))
    assert [b.decoded for b in batches] == [[2], [0, 1, 2], [1, 2, 0]]
    assert ring.read(Query())[0] == everything  # decoded once, kept
    assert [b.decoded for b in batches] == [[2], [0, 1, 2], [1, 2, 0]]

    fresh, seq = ring.after(Query(), 6, 0)
    assert sports(fresh) == [6, 7, 8] and seq == 9
    observer.take(events.Records(record(sport=100) + record(sport=101)))
    assert (len(ring), ring.seen) == (7, 11)
    assert sports(ring.after(Query(), 9, 0)[0]) == [100, 101]
    assert sports(ring.read(Query())[0]) == [4, 5, 6, 7, 8, 100, 101]


def test_listeners_get_every_flow_of_a_batch_at_once() -> None:
    observer = HubbleObserver(
        node="n1",
        cluster="c1",
        capacity=4095,
        attribution=lambda *_: ((), ()),
        labels_of=lambda _: None,
    )
    got: list[Flow] = []
    observer.listeners.append(got.extend)
    observer.take(events.Records(record(sport=1) + record(sport=2)))
    assert sports(got) == [1, 2]
    assert observer.ring.read(Query())[0] == got
