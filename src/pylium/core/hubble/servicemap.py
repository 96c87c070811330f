"""L2: the Hubble UI's service map and flow-table filters, from flows.

Nodes are workloads: pods grouped by namespace and ``app`` label (else by pod name), other
identities by their number, and the reserved ones (``world``, ``host``, ``remote-node``...)
each as one node of its own, as Hubble UI draws them. An edge is one (source, destination,
protocol, destination port), counted per verdict; replies are left out so that edges point
the way connections were opened. Pure: the UI server feeds it the flows it collected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pylium.core.hubble.flow import (
    EVENT_TRACE,
    PROTO_NAMES,
    Endpoint,
    Flow,
    TraceObservationPoint,
    Verdict,
)

RESERVED = {
    1: "host",
    2: "world",
    3: "unmanaged",
    4: "health",
    5: "init",
    6: "remote-node",
    7: "kube-apiserver",
    8: "ingress",
    9: "world",
    10: "world",
}
"""Reserved identities by number (world-ipv4/-ipv6 drawn as the one ``world``)."""
APP_KEYS = ("app", "app.kubernetes.io/name", "k8s-app", "name")


def _label(labels: Iterable[str], keys: tuple[str, ...]) -> str:
    found = {}
    for label in labels:
        key, _, value = label.partition("=")
        found[key.split(":", 1)[-1]] = value
    return next((found[k] for k in keys if found.get(k)), "")


def _reserved_name(ep: Endpoint) -> str:
    if ep.identity in RESERVED:
        return RESERVED[ep.identity]
    for label in ep.labels:
        if label.startswith("reserved:"):
            name = label.split(":", 1)[1].split("=", 1)[0]
            return "world" if name.startswith("world") else name
    return ""


@dataclass(frozen=True, slots=True)
class MapNode:
    id: str
    label: str
    kind: str
    """``workload``, ``reserved`` (world, host, ...), ``identity`` or ``ip``."""
    namespace: str = ""
    identity: int = 0
    labels: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "namespace": self.namespace,
            "identity": self.identity,
            "labels": list(self.labels),
        }


def map_node(ep: Endpoint, ip: str) -> MapNode:
    """Which node of the map a flow's side belongs to."""
    reserved = _reserved_name(ep)
    if reserved and not ep.pod_name:
        return MapNode(f"reserved:{reserved}", reserved, "reserved", identity=ep.identity)
    if ep.namespace and (ep.pod_name or ep.labels):
        app = _label(ep.labels, APP_KEYS) or ep.pod_name
        return MapNode(
            f"{ep.namespace}/{app}",
            app,
            "workload",
            ep.namespace,
            ep.identity,
            tuple(lb for lb in ep.labels if not lb.startswith("k8s:io.")),
        )
    if ep.identity:
        app = _label(ep.labels, APP_KEYS)
        name = app or f"identity {ep.identity}"
        return MapNode(f"identity:{ep.identity}", name, "identity", identity=ep.identity)
    return MapNode(f"ip:{ip}", ip, "ip")


@dataclass(slots=True)
class MapEdge:
    source: str
    target: str
    protocol: str
    port: int
    verdicts: dict[str, int] = field(default_factory=dict)
    decisive: dict[str, int] = field(default_factory=dict)
    """Verdicts of the flows that decide the connection's fate: drops, policy verdicts and
    deliveries (to-endpoint), not the hops on the way (a packet forwarded into the tunnel by
    one node and dropped by the other's policy is a drop)."""
    policies: set[str] = field(default_factory=set)

    @property
    def verdict(self) -> str:
        """``forwarded``, ``dropped``, ``audit`` or ``mixed`` (colours the edge)."""
        counts = self.decisive or self.verdicts
        kinds = {v for v, n in counts.items() if n}
        if kinds <= {"FORWARDED", "TRACED", "TRANSLATED", "REDIRECTED"}:
            return "forwarded"
        if kinds == {"DROPPED"} or kinds == {"DROPPED", "ERROR"}:
            return "dropped"
        if kinds == {"AUDIT"}:
            return "audit"
        return "mixed"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": f"{self.source}>{self.target}:{self.protocol}/{self.port}",
            "source": self.source,
            "target": self.target,
            "protocol": self.protocol,
            "port": self.port,
            "verdicts": dict(sorted(self.verdicts.items())),
            "verdict": self.verdict,
            "policies": sorted(self.policies),
        }


def _decisive(flow: Flow) -> bool:
    if flow.event_type != EVENT_TRACE:
        return True
    return flow.trace_observation_point is TraceObservationPoint.TO_ENDPOINT


def _in_namespace(flow: Flow, namespace: str) -> bool:
    return flow.source.namespace == namespace or flow.destination.namespace == namespace


def service_map(flows: Iterable[Flow], namespace: str = "") -> dict[str, Any]:
    """``{"nodes": [...], "edges": [...]}`` for the flows touching ``namespace`` (all when
    empty), sorted so that equal inputs give equal maps."""
    nodes: dict[str, MapNode] = {}
    edges: dict[tuple[str, str, str, int], MapEdge] = {}
    for flow in flows:
        if namespace and not _in_namespace(flow, namespace):
            continue
        if flow.is_reply or (flow.proto == 0 and not flow.source.identity):
            continue  # replies draw no edge back; non-IP packets (ARP, IPv6) have no sides
        src = map_node(flow.source, flow.source_ip)
        dst = map_node(flow.destination, flow.destination_ip)
        nodes.setdefault(src.id, src)
        nodes.setdefault(dst.id, dst)
        proto = PROTO_NAMES.get(flow.proto, str(flow.proto))
        port = flow.destination_port if flow.proto in (6, 17, 132) else 0
        edge = edges.setdefault((src.id, dst.id, proto, port), MapEdge(src.id, dst.id, proto, port))
        edge.verdicts[flow.verdict.name] = edge.verdicts.get(flow.verdict.name, 0) + 1
        if _decisive(flow):
            edge.decisive[flow.verdict.name] = edge.decisive.get(flow.verdict.name, 0) + 1
        edge.policies.update(str(p) for p in (*flow.allowed_by, *flow.denied_by))
    return {
        "nodes": [n.to_json() for _, n in sorted(nodes.items())],
        "edges": [e.to_json() for _, e in sorted(edges.items())],
    }


def flow_matches(flow: Flow, *, namespace: str = "", verdict: str = "", pod: str = "") -> bool:
    """The UI's flow-table filters: namespace of either side, verdict name, and a pod name
    (``name`` or ``namespace/name`` prefix) on either side."""
    if namespace and not _in_namespace(flow, namespace):
        return False
    if verdict:
        try:
            if flow.verdict is not Verdict[verdict.upper()]:
                return False
        except KeyError:
            return False
    if pod:
        sides = (flow.source, flow.destination)
        names = [f"{ep.namespace}/{ep.pod_name}" for ep in sides if ep.pod_name]
        names += [ep.pod_name for ep in sides if ep.pod_name]
        if not any(name.startswith(pod) for name in names):
            return False
    return True


def namespaces(flows: Iterable[Flow]) -> list[str]:
    found = {ep.namespace for f in flows for ep in (f.source, f.destination) if ep.namespace}
    return sorted(found)
