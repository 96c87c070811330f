"""L2: datapath events to Hubble flows: the ``Flow`` record in the shape of Hubble's
``flow.proto`` (field names as Hubble's JSON output spells them), built from one event of the
datapath's ring buffer and the node's knowledge of endpoints and identities.

Pure: the event arrives as plain fields (:class:`EventFields`, which the BPF adapter's
``FlowEvent`` satisfies), the lookups as callables; nothing here reads maps or the store.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Monitor message types (Cilium's pkg/monitor/api/types.go).
EVENT_DROP, EVENT_TRACE, EVENT_POLICY_VERDICT = 1, 4, 5
EVENT_TYPE_NAMES = {
    EVENT_DROP: "drop",
    EVENT_TRACE: "trace",
    EVENT_POLICY_VERDICT: "policy-verdict",
}
FLAG_AUDITED = 1


class Verdict(enum.IntEnum):
    VERDICT_UNKNOWN = 0
    FORWARDED = 1
    DROPPED = 2
    ERROR = 3
    AUDIT = 4
    REDIRECTED = 5
    TRACED = 6
    TRANSLATED = 7


class TrafficDirection(enum.IntEnum):
    TRAFFIC_DIRECTION_UNKNOWN = 0
    INGRESS = 1
    EGRESS = 2


class TraceObservationPoint(enum.IntEnum):
    UNKNOWN_POINT = 0
    TO_PROXY = 1
    TO_HOST = 2
    TO_STACK = 3
    TO_OVERLAY = 4
    FROM_ENDPOINT = 5
    FROM_PROXY = 6
    FROM_HOST = 7
    FROM_STACK = 8
    FROM_OVERLAY = 9
    FROM_NETWORK = 10
    TO_NETWORK = 11
    TO_ENDPOINT = 101


class TraceReason(enum.IntEnum):
    TRACE_REASON_UNKNOWN = 0
    NEW = 1
    ESTABLISHED = 2
    REPLY = 3
    RELATED = 4


DATAPATH_TRACE_POINTS = {
    0: TraceObservationPoint.TO_ENDPOINT,  # the datapath's TRACE_TO_LXC is 0; the proto's 101
    1: TraceObservationPoint.TO_PROXY,
    2: TraceObservationPoint.TO_HOST,
    3: TraceObservationPoint.TO_STACK,
    4: TraceObservationPoint.TO_OVERLAY,
    5: TraceObservationPoint.FROM_ENDPOINT,
    11: TraceObservationPoint.TO_NETWORK,  # out of a native device (BPF host routing, NodePort)
}
"""Datapath TRACE_* numbers -> the proto's observation points."""

TRACE_POINT_TEXT = {
    TraceObservationPoint.TO_ENDPOINT: "to-endpoint",
    TraceObservationPoint.TO_PROXY: "to-proxy",
    TraceObservationPoint.TO_HOST: "to-host",
    TraceObservationPoint.TO_STACK: "to-stack",
    TraceObservationPoint.TO_OVERLAY: "to-overlay",
    TraceObservationPoint.FROM_ENDPOINT: "from-endpoint",
    TraceObservationPoint.TO_NETWORK: "to-network",
}

DROP_REASONS = {
    130: "INVALID_SOURCE_MAC",
    131: "INVALID_DESTINATION_MAC",
    132: "INVALID_SOURCE_IP",
    133: "POLICY_DENIED",
    134: "INVALID_PACKET_DROPPED",
    135: "CT_TRUNCATED_OR_INVALID_HEADER",
    136: "CT_MISSING_TCP_ACK_FLAG",
    137: "CT_UNKNOWN_L4_PROTOCOL",
    139: "UNSUPPORTED_L3_PROTOCOL",
    140: "MISSED_TAIL_CALL",
    141: "ERROR_WRITING_TO_PACKET",
    142: "UNKNOWN_L4_PROTOCOL",
    147: "ERROR_RETRIEVING_TUNNEL_KEY",
    150: "UNKNOWN_L3_TARGET_ADDRESS",
    151: "STALE_OR_UNROUTABLE_IP",
    153: "INVALID_L3_CHECKSUM",
    154: "INVALID_L4_CHECKSUM",
    155: "CT_MAP_INSERTION_FAILED",
    157: "IP_FRAGMENTATION_NOT_SUPPORTED",
    158: "SERVICE_BACKEND_NOT_FOUND",
    160: "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
    163: "UNKNOWN_CONNECTION_TRACKING_STATE",
    167: "NAT_NO_MAPPING",
    169: "FIB_LOOKUP_FAILED",
    171: "INVALID_IDENTITY",
    181: "POLICY_DENY",
    183: "INVALID_VNI",
    189: "AUTH_REQUIRED",
    196: "TTL_EXCEEDED",
}
"""Cilium's drop reasons by number (the proto's ``DropReason`` names)."""

DROP_REASON_TEXT = {
    132: "Invalid source ip",
    133: "Policy denied",
    134: "Invalid packet",
    135: "CT: Truncated or invalid header",
    139: "Unsupported L3 protocol",
    141: "Error writing to packet",
    147: "Error retrieving tunnel key",
    155: "CT: Map insertion failed",
    158: "Service backend not found",
    160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    167: "No mapping for NAT masquerade",
    181: "Policy denied by denylist",
}
"""The monitor's words for the reasons (``cilium-dbg monitor``, ``hubble observe``)."""

TCP_FLAG_BITS = (
    ("FIN", 0x01),
    ("SYN", 0x02),
    ("RST", 0x04),
    ("PSH", 0x08),
    ("ACK", 0x10),
    ("URG", 0x20),
    ("ECE", 0x40),
    ("CWR", 0x80),
)
PROTO_NAMES = {1: "ICMPv4", 6: "TCP", 17: "UDP", 132: "SCTP"}


class EventFields(Protocol):
    """What a datapath event carries (read-only)."""

    @property
    def ts(self) -> int: ...

    @property
    def type(self) -> int: ...

    @property
    def reason(self) -> int: ...

    @property
    def obs_point(self) -> int: ...

    @property
    def direction(self) -> int: ...

    @property
    def proto(self) -> int: ...

    @property
    def tcp_flags(self) -> int: ...

    @property
    def source(self) -> int: ...

    @property
    def ifindex(self) -> int: ...

    @property
    def src_identity(self) -> int: ...

    @property
    def dst_identity(self) -> int: ...

    @property
    def saddr(self) -> ipaddress.IPv4Address: ...

    @property
    def daddr(self) -> ipaddress.IPv4Address: ...

    @property
    def sport(self) -> int: ...

    @property
    def dport(self) -> int: ...

    @property
    def length(self) -> int: ...

    @property
    def flags(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Hubble's ``Endpoint``: what the node knows of one side of a flow."""

    identity: int
    labels: tuple[str, ...] = ()
    id: int = 0
    namespace: str = ""
    pod_name: str = ""
    cluster_name: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identity": self.identity}
        if self.id:
            out["ID"] = self.id
        if self.cluster_name:
            out["cluster_name"] = self.cluster_name
        if self.namespace:
            out["namespace"] = self.namespace
        if self.labels:
            out["labels"] = list(self.labels)
        if self.pod_name:
            out["pod_name"] = self.pod_name
        return out

    def display(self, ip: str, port: int) -> str:
        where = f"{self.namespace}/{self.pod_name}" if self.pod_name else ip
        return f"{where}:{port}" if port else where


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """Hubble's ``Policy`` (``ingress_denied_by`` and friends)."""

    name: str
    namespace: str
    kind: str
    revision: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.revision:
            out["revision"] = self.revision
        return out

    def __str__(self) -> str:
        scope = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {scope}{self.name}"


@dataclass(slots=True)  # not frozen: a frozen init costs a setattr call per field (hot path)
class Flow:
    time_ns: int
    node_name: str
    verdict: Verdict
    event_type: int
    source_ip: str
    destination_ip: str
    proto: int
    source_port: int
    destination_port: int
    tcp_flags: int
    source: Endpoint
    destination: Endpoint
    traffic_direction: TrafficDirection
    is_reply: bool | None = None
    drop_reason: int = 0
    trace_observation_point: TraceObservationPoint = TraceObservationPoint.UNKNOWN_POINT
    trace_reason: TraceReason = TraceReason.TRACE_REASON_UNKNOWN
    policy_match_type: int = 0
    length: int = 0
    interface_index: int = 0
    allowed_by: tuple[PolicyRef, ...] = ()
    """Policies that allowed it (policy verdicts): ``<direction>_allowed_by``."""
    denied_by: tuple[PolicyRef, ...] = field(default=())
    """Policies that denied it (drops 133/181, audits): ``<direction>_denied_by``."""

    @property
    def drop_reason_desc(self) -> str:
        return DROP_REASONS.get(self.drop_reason, "DROP_REASON_UNKNOWN") if self.drop_reason else ""

    @property
    def event_type_name(self) -> str:
        return EVENT_TYPE_NAMES.get(self.event_type, str(self.event_type))

    def tcp_flag_names(self) -> list[str]:
        return [name for name, bit in TCP_FLAG_BITS if self.tcp_flags & bit]

    def l4_json(self) -> dict[str, Any]:
        if self.proto == 6:
            flags = {name: True for name in self.tcp_flag_names()}
            tcp: dict[str, Any] = {
                "source_port": self.source_port,
                "destination_port": self.destination_port,
            }
            if flags:
                tcp["flags"] = flags
            return {"TCP": tcp}
        if self.proto == 17:
            return {
                "UDP": {"source_port": self.source_port, "destination_port": self.destination_port}
            }
        if self.proto == 132:
            return {
                "SCTP": {"source_port": self.source_port, "destination_port": self.destination_port}
            }
        if self.proto == 1:
            return {"ICMPv4": {}}
        return {}

    def to_json(self) -> dict[str, Any]:
        """Hubble's JSON for a Flow (``hubble observe -o jsonpb``'s ``flow`` object)."""
        out: dict[str, Any] = {
            "time": self.time_ns,
            "verdict": self.verdict.name,
            "IP": {
                "source": self.source_ip,
                "destination": self.destination_ip,
                "ipVersion": "IPv4",
            },
            "l4": self.l4_json(),
            "source": self.source.to_json(),
            "destination": self.destination.to_json(),
            "Type": "L3_L4",
            "node_name": self.node_name,
            "event_type": {"type": self.event_type},
            "traffic_direction": self.traffic_direction.name,
        }
        if self.drop_reason:
            out["drop_reason"] = self.drop_reason
            out["drop_reason_desc"] = self.drop_reason_desc
        if self.trace_observation_point is not TraceObservationPoint.UNKNOWN_POINT:
            out["trace_observation_point"] = self.trace_observation_point.name
        if self.trace_reason is not TraceReason.TRACE_REASON_UNKNOWN:
            out["trace_reason"] = self.trace_reason.name
        if self.is_reply is not None:
            out["is_reply"] = self.is_reply
        if self.event_type == EVENT_POLICY_VERDICT:
            out["policy_match_type"] = self.policy_match_type
        if self.interface_index:
            out["interface"] = {"index": self.interface_index}
        direction = self.traffic_direction.name.lower()
        if self.allowed_by:
            out[f"{direction}_allowed_by"] = [p.to_json() for p in self.allowed_by]
        if self.denied_by:
            out[f"{direction}_denied_by"] = [p.to_json() for p in self.denied_by]
        out["Summary"] = self.summary()
        return out

    def summary(self) -> str:
        proto = PROTO_NAMES.get(self.proto, f"proto {self.proto}")
        if self.proto == 6 and self.tcp_flags:
            return f"TCP Flags: {', '.join(self.tcp_flag_names())}"
        return proto


def _endpoint_from_json(d: Mapping[str, Any]) -> Endpoint:
    return Endpoint(
        identity=int(d.get("identity", 0)),
        labels=tuple(d.get("labels") or ()),
        id=int(d.get("ID", 0)),
        namespace=str(d.get("namespace", "")),
        pod_name=str(d.get("pod_name", "")),
        cluster_name=str(d.get("cluster_name", "")),
    )


def _policies_from_json(items: Any) -> tuple[PolicyRef, ...]:
    return tuple(
        PolicyRef(
            name=str(p.get("name", "")),
            namespace=str(p.get("namespace", "")),
            kind=str(p.get("kind", "")),
            revision=int(p.get("revision", 0)),
        )
        for p in items or ()
    )


def flow_from_json(d: Mapping[str, Any]) -> Flow:
    """The inverse of :meth:`Flow.to_json` (what the agent's API and exports carry)."""
    l4 = d.get("l4") or {}
    proto, flags = 0, 0
    ports: Mapping[str, Any] = {}
    for name, number in (("TCP", 6), ("UDP", 17), ("SCTP", 132), ("ICMPv4", 1)):
        if name in l4:
            proto, ports = number, l4[name] or {}
            for flag, bit in TCP_FLAG_BITS:
                if (ports.get("flags") or {}).get(flag):
                    flags |= bit
    direction = TrafficDirection[d.get("traffic_direction", "TRAFFIC_DIRECTION_UNKNOWN")]
    lower = direction.name.lower()
    return Flow(
        time_ns=int(d.get("time", 0)),
        node_name=str(d.get("node_name", "")),
        verdict=Verdict[d.get("verdict", "VERDICT_UNKNOWN")],
        event_type=int((d.get("event_type") or {}).get("type", 0)),
        source_ip=str((d.get("IP") or {}).get("source", "")),
        destination_ip=str((d.get("IP") or {}).get("destination", "")),
        proto=proto,
        source_port=int(ports.get("source_port", 0)),
        destination_port=int(ports.get("destination_port", 0)),
        tcp_flags=flags,
        source=_endpoint_from_json(d.get("source") or {}),
        destination=_endpoint_from_json(d.get("destination") or {}),
        traffic_direction=direction,
        is_reply=d.get("is_reply"),
        drop_reason=int(d.get("drop_reason", 0)),
        trace_observation_point=TraceObservationPoint[
            d.get("trace_observation_point", "UNKNOWN_POINT")
        ],
        trace_reason=TraceReason[d.get("trace_reason", "TRACE_REASON_UNKNOWN")],
        policy_match_type=int(d.get("policy_match_type", 0)),
        interface_index=int((d.get("interface") or {}).get("index", 0)),
        allowed_by=_policies_from_json(d.get(f"{lower}_allowed_by")),
        denied_by=_policies_from_json(d.get(f"{lower}_denied_by")),
    )


EndpointLookup = Callable[[ipaddress.IPv4Address, int], Endpoint]
"""(address, identity) -> what is known of that side."""
Decided = tuple[tuple[PolicyRef, ...], tuple[PolicyRef, ...]]
"""The policies that decided a verdict: (allowed by, denied by)."""
PolicyAttribution = Callable[[EventFields], Decided]
"""event -> (allowed by, denied by)."""


@functools.lru_cache(maxsize=65536)
def _text(address: ipaddress.IPv4Address) -> str:
    return str(address)


_DIRECTIONS = {1: TrafficDirection.INGRESS, 2: TrafficDirection.EGRESS}


def flow_from_event(
    event: EventFields,
    *,
    node: str,
    boot_offset_ns: int,
    lookup: EndpointLookup,
    attribution: PolicyAttribution | None = None,
) -> Flow:
    """One datapath event as a flow; ``boot_offset_ns`` turns the event's monotonic time into
    wall-clock time (``time_ns() - monotonic_ns()``, read once by the caller)."""
    verdict = Verdict.FORWARDED
    drop_reason = 0
    point = TraceObservationPoint.UNKNOWN_POINT
    reason = TraceReason.TRACE_REASON_UNKNOWN
    is_reply: bool | None = None
    if event.type == EVENT_DROP:
        verdict, drop_reason = Verdict.DROPPED, event.reason
    elif event.type == EVENT_TRACE:
        point = DATAPATH_TRACE_POINTS.get(event.obs_point, TraceObservationPoint.UNKNOWN_POINT)
        reason = TraceReason(event.reason + 1) if event.reason <= 3 else reason
        is_reply = event.reason == 2
    elif event.type == EVENT_POLICY_VERDICT and event.reason:
        drop_reason = event.reason
        verdict = Verdict.AUDIT if event.flags & FLAG_AUDITED else Verdict.DROPPED
    allowed: tuple[PolicyRef, ...] = ()
    denied: tuple[PolicyRef, ...] = ()
    if attribution is not None and event.type in (EVENT_DROP, EVENT_POLICY_VERDICT):
        allowed, denied = attribution(event)
    direction = _DIRECTIONS.get(event.direction, TrafficDirection.TRAFFIC_DIRECTION_UNKNOWN)
    return Flow(
        time_ns=event.ts + boot_offset_ns,
        node_name=node,
        verdict=verdict,
        event_type=event.type,
        source_ip=_text(event.saddr),
        destination_ip=_text(event.daddr),
        proto=event.proto,
        source_port=event.sport,
        destination_port=event.dport,
        tcp_flags=event.tcp_flags,
        source=lookup(event.saddr, event.src_identity),
        destination=lookup(event.daddr, event.dst_identity),
        traffic_direction=direction,
        is_reply=is_reply,
        drop_reason=drop_reason,
        trace_observation_point=point,
        trace_reason=reason,
        policy_match_type=event.obs_point if event.type == EVENT_POLICY_VERDICT else 0,
        length=event.length,
        interface_index=event.ifindex,
        allowed_by=allowed,
        denied_by=denied,
    )


def reserved_endpoint(identity: int, labels: Mapping[int, tuple[str, ...]]) -> Endpoint:
    return Endpoint(identity=identity, labels=labels.get(identity, ()))
