"""Datapath events to Hubble flows: verdicts, observation points, reply flag, drop reasons,
policy attribution, JSON round trip, filters (allow/deny lists, pods, labels, protocols),
the ring (capacity rule, last/first N, follow) and the compact rendering."""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from dataclasses import dataclass

import pytest

from pylium.core.hubble.filters import EVENT_TYPES, FlowFilter, passes
from pylium.core.hubble.flow import (
    Endpoint,
    Flow,
    PolicyAttribution,
    PolicyRef,
    TraceObservationPoint,
    TraceReason,
    TrafficDirection,
    Verdict,
    flow_from_event,
    flow_from_json,
)
from pylium.core.hubble.render import compact
from pylium.core.hubble.ring import FlowRing, Query, check_capacity

CLIENT_IP = ipaddress.IPv4Address("10.0.0.3")
SERVER_IP = ipaddress.IPv4Address("10.0.0.2")


@dataclass
class Ev:
    type: int
    reason: int = 0
    obs_point: int = 0
    direction: int = 2
    proto: int = 6
    tcp_flags: int = 0x02
    source: int = 1
    ifindex: int = 7
    src_identity: int = 257
    dst_identity: int = 256
    saddr: ipaddress.IPv4Address = CLIENT_IP
    daddr: ipaddress.IPv4Address = SERVER_IP
    sport: int = 43210
    dport: int = 8080
    length: int = 74
    flags: int = 0
    ts: int = 1_000


PODS = {
    ipaddress.IPv4Address("10.0.0.3"): Endpoint(257, ("k8s:app=client",), 2, "default", "client"),
    ipaddress.IPv4Address("10.0.0.2"): Endpoint(256, ("k8s:app=server",), 1, "default", "server"),
}


def lookup(ip: ipaddress.IPv4Address, identity: int) -> Endpoint:
    return PODS.get(ip, Endpoint(identity, ("reserved:world",)))


def make(ev: Ev, attribution: PolicyAttribution | None = None) -> Flow:
    return flow_from_event(
        ev,
        node="n1",
        boot_offset_ns=1_700_000_000_000_000_000,
        lookup=lookup,
        attribution=attribution,
    )


def test_trace_drop_and_verdict_events() -> None:
    trace = make(Ev(type=4, reason=2, obs_point=0, direction=1))
    assert trace.verdict is Verdict.FORWARDED and trace.is_reply is True
    assert trace.trace_observation_point is TraceObservationPoint.TO_ENDPOINT
    assert trace.trace_reason is TraceReason.REPLY
    assert trace.source.pod_name == "client" and trace.destination.pod_name == "server"
    drop = make(Ev(type=1, reason=181, direction=1))
    assert drop.verdict is Verdict.DROPPED and drop.drop_reason_desc == "POLICY_DENY"
    audit = make(Ev(type=5, reason=133, obs_point=2, flags=1, direction=1))
    assert audit.verdict is Verdict.AUDIT and audit.drop_reason == 133
    denied = make(
        Ev(type=5, reason=133, obs_point=0, direction=1),
        attribution=lambda e: ((), (PolicyRef("web", "default", "CiliumNetworkPolicy"),)),
    )
    assert denied.verdict is Verdict.DROPPED
    assert denied.to_json()["ingress_denied_by"] == [
        {"name": "web", "kind": "CiliumNetworkPolicy", "namespace": "default"}
    ]
    assert "by CiliumNetworkPolicy default/web" in compact(denied, print_policy_names=True)
    assert "policy-verdict:none INGRESS DENIED" in compact(denied)
    assert "default/client:43210 (ID:257) -> default/server:8080 (ID:256)" in compact(denied)
    for flow in (trace, drop, audit, denied):
        assert flow_from_json(flow.to_json()) == dataclasses.replace(flow, length=0)


def test_out_of_a_native_device_is_to_network() -> None:
    # TRACE_TO_NETWORK (11): BPF host routing and the NodePort path send packets out themselves
    routed = make(Ev(type=4, reason=0, obs_point=11, direction=2))
    assert routed.trace_observation_point is TraceObservationPoint.TO_NETWORK
    assert " to-network FORWARDED " in compact(routed)


def test_filters() -> None:
    fwd = make(Ev(type=4, obs_point=0))
    drop = make(Ev(type=1, reason=133, proto=17, tcp_flags=0))
    assert passes(fwd, [FlowFilter(source_pod=("default/cli",))])
    assert not passes(fwd, [FlowFilter(source_pod=("other/",))])
    assert passes(fwd, [FlowFilter(destination_label=("app=server",))])
    assert passes(fwd, [FlowFilter(destination_label=("k8s:app=server,k8s:app=x",))]) is False
    assert passes(drop, [FlowFilter(verdict=(Verdict.DROPPED,), protocol=("udp",))])
    assert not passes(drop, [FlowFilter(event_type=(EVENT_TYPES["trace"],))])
    assert not passes(fwd, [], [FlowFilter(destination_port=(8080,))])  # deny list
    assert passes(fwd, [FlowFilter(node_name=("n2",)), FlowFilter(source_ip=("10.0.0.3",))])
    assert passes(fwd, [FlowFilter(traffic_direction=(TrafficDirection.EGRESS,), reply=(False,))])


def test_ring() -> None:
    with pytest.raises(ValueError, match="2\\^n-1"):
        check_capacity(4096)
    ring = FlowRing(7)
    flows = [make(Ev(type=4, sport=i)) for i in range(10)]
    ring.add(flows)
    assert len(ring) == 7 and ring.seen == 10
    last, seq = ring.read(Query(number=2))
    assert [f.source_port for f in last] == [8, 9] and seq == 10
    first, _ = ring.read(Query(number=2, first=True))
    assert [f.source_port for f in first] == [3, 4]
    stop = threading.Event()
    got: list[int] = []

    def follow() -> None:
        for flow in ring.follow(Query(), seq, stop, poll=0.05):
            got.append(flow.source_port)
            if len(got) == 2:
                stop.set()

    thread = threading.Thread(target=follow)
    thread.start()
    ring.add([make(Ev(type=4, sport=100)), make(Ev(type=4, sport=101))])
    thread.join(5)
    assert got == [100, 101]
