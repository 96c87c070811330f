"""L3: the core's flows and filters to and from Hubble's protobuf messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from pylium.adapters.hubbleapi import flow_pb
from pylium.core.hubble.filters import FlowFilter
from pylium.core.hubble.flow import (
    TCP_FLAG_BITS,
    Endpoint,
    Flow,
    PolicyRef,
    TraceObservationPoint,
    TraceReason,
    TrafficDirection,
    Verdict,
)


def _endpoint(ep: Endpoint) -> Any:
    return flow_pb().Endpoint(
        ID=ep.id,
        identity=ep.identity,
        namespace=ep.namespace,
        labels=list(ep.labels),
        pod_name=ep.pod_name,
        cluster_name=ep.cluster_name,
    )


def _policy(p: PolicyRef) -> Any:
    return flow_pb().Policy(name=p.name, namespace=p.namespace, kind=p.kind, revision=p.revision)


def to_pb(flow: Flow) -> Any:
    pb = flow_pb()
    msg = pb.Flow(
        verdict=int(flow.verdict),
        drop_reason=flow.drop_reason,
        drop_reason_desc=flow.drop_reason,
        IP=pb.IP(source=flow.source_ip, destination=flow.destination_ip, ipVersion=1),
        source=_endpoint(flow.source),
        destination=_endpoint(flow.destination),
        Type=1,
        node_name=flow.node_name,
        event_type=pb.CiliumEventType(type=flow.event_type),
        traffic_direction=int(flow.traffic_direction),
        policy_match_type=flow.policy_match_type,
        trace_observation_point=int(flow.trace_observation_point),
        trace_reason=int(flow.trace_reason),
        interface=pb.NetworkInterface(index=flow.interface_index),
        Summary=flow.summary(),
    )
    msg.time.FromNanoseconds(flow.time_ns)
    if flow.is_reply is not None:
        msg.is_reply.value = flow.is_reply
    ports = {"source_port": flow.source_port, "destination_port": flow.destination_port}
    if flow.proto == 6:
        flags = {name: bool(flow.tcp_flags & bit) for name, bit in TCP_FLAG_BITS}
        msg.l4.TCP.CopyFrom(pb.TCP(flags=pb.TCPFlags(**flags), **ports))
    elif flow.proto == 17:
        msg.l4.UDP.CopyFrom(pb.UDP(**ports))
    elif flow.proto == 132:
        msg.l4.SCTP.CopyFrom(pb.SCTP(**ports))
    elif flow.proto == 1:
        msg.l4.ICMPv4.SetInParent()
    direction = "ingress" if flow.traffic_direction is TrafficDirection.INGRESS else "egress"
    getattr(msg, f"{direction}_allowed_by").extend(_policy(p) for p in flow.allowed_by)
    getattr(msg, f"{direction}_denied_by").extend(_policy(p) for p in flow.denied_by)
    return msg


def _endpoint_from_pb(ep: Any) -> Endpoint:
    return Endpoint(
        identity=ep.identity,
        labels=tuple(ep.labels),
        id=ep.ID,
        namespace=ep.namespace,
        pod_name=ep.pod_name,
        cluster_name=ep.cluster_name,
    )


def from_pb(msg: Any) -> Flow:
    proto, ports, flags = 0, None, 0
    kind = msg.l4.WhichOneof("protocol")
    if kind:
        proto = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMPv4": 1}[kind]
        ports = getattr(msg.l4, kind)
        if kind == "TCP":
            flags = sum(bit for name, bit in TCP_FLAG_BITS if getattr(ports.flags, name))
    direction = TrafficDirection(msg.traffic_direction)
    lower = "ingress" if direction is TrafficDirection.INGRESS else "egress"

    def policies(items: Any) -> tuple[PolicyRef, ...]:
        return tuple(PolicyRef(p.name, p.namespace, p.kind, p.revision) for p in items)

    return Flow(
        time_ns=msg.time.ToNanoseconds(),
        node_name=msg.node_name,
        verdict=Verdict(msg.verdict),
        event_type=msg.event_type.type,
        source_ip=msg.IP.source,
        destination_ip=msg.IP.destination,
        proto=proto,
        source_port=getattr(ports, "source_port", 0),
        destination_port=getattr(ports, "destination_port", 0),
        tcp_flags=flags,
        source=_endpoint_from_pb(msg.source),
        destination=_endpoint_from_pb(msg.destination),
        traffic_direction=direction,
        is_reply=msg.is_reply.value if msg.HasField("is_reply") else None,
        drop_reason=msg.drop_reason,
        trace_observation_point=TraceObservationPoint(msg.trace_observation_point),
        trace_reason=TraceReason(msg.trace_reason),
        policy_match_type=msg.policy_match_type,
        interface_index=msg.interface.index,
        allowed_by=policies(getattr(msg, f"{lower}_allowed_by")),
        denied_by=policies(getattr(msg, f"{lower}_denied_by")),
    )


# FlowFilter fields whose protobuf form differs from the core's: (from protobuf, to protobuf)
# per element. Every other field is a repeated scalar carried as is.
_FILTER_CONVERSIONS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "source_port": (int, str),
    "destination_port": (int, str),
    "verdict": (Verdict, int),
    "event_type": (lambda e: e.type, lambda t: flow_pb().EventTypeFilter(type=t)),
    "traffic_direction": (TrafficDirection, int),
}


def _identity(value: Any) -> Any:
    return value


def filter_from_pb(f: Any) -> FlowFilter:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(FlowFilter):
        convert = _FILTER_CONVERSIONS.get(field.name, (_identity, _identity))[0]
        values[field.name] = tuple(convert(v) for v in getattr(f, field.name))
    return FlowFilter(**values)


def filter_to_pb(f: FlowFilter) -> Any:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(FlowFilter):
        convert = _FILTER_CONVERSIONS.get(field.name, (_identity, _identity))[1]
        values[field.name] = [convert(v) for v in getattr(f, field.name)]
    return flow_pb().FlowFilter(**values)
