"""L2: frontends and backends of a Service on one node, and which backends each frontend uses.

Mirrors upstream's ``reflectors/conversions.go`` (frontends, backend states) and the BPF
reconciler's slot ordering (``bpf_reconciler.go``):

* ClusterIP frontends for every cluster IP and port, external scope only.
* NodePort (with kube-proxy replacement) for NodePort and LoadBalancer services: the
  surrogate ``0.0.0.0:<nodePort>`` plus one per node address of the family.
* LoadBalancer for each VIP in ``status.loadBalancer.ingress``; ExternalIPs for each IP.
* NodePort, LoadBalancer and ExternalIPs frontends get a second, internal scope when exactly
  one of the traffic policies is Local (facts §4.3).
* ``service.cilium.io/type`` provisions only that type's frontends (ClusterIP, NodePort or
  LoadBalancer; other values are ignored); ExternalIPs are not affected, as upstream.

Slot order: active, terminating, terminating-not-serving, quarantined (then address, port);
maintenance backends get no slot. ``count`` slots take new connections: the active ones, or
the terminating ones when no active backend is left (KEP-1669); the rest (``qcount``) are only
kept so that existing connections survive.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pylium.core.lb.addr import (
    BackendState,
    IPAddress,
    L3n4Addr,
    Protocol,
    Scope,
    ServiceName,
    SVCType,
    TrafficPolicy,
)
from pylium.core.lb.k8s import Endpoint, EndpointSlice, Service
from pylium.core.lb.maglev import DEFAULT_BACKEND_WEIGHT

TYPE_ANNOTATION = "service.cilium.io/type"
NODE_ANNOTATION = "service.cilium.io/node"
NODE_SELECTOR_ANNOTATION = "service.cilium.io/node-selector"
LB_ALGORITHM_ANNOTATION = "service.cilium.io/lb-algorithm"

_EXPOSABLE = {SVCType.CLUSTER_IP, SVCType.NODE_PORT, SVCType.LOAD_BALANCER}


@dataclass(frozen=True, slots=True, kw_only=True)
class Frontend:
    address: L3n4Addr
    type: SVCType
    service: ServiceName
    port_name: str = ""
    service_port: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    address: L3n4Addr
    state: BackendState = BackendState.ACTIVE
    port_names: tuple[str, ...] = ()
    node_name: str = ""
    zone: str = ""
    weight: int = DEFAULT_BACKEND_WEIGHT


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The backends one frontend uses on this node, in service-slot order."""

    frontend: Frontend
    slots: tuple[Backend, ...] = ()
    """Slot 1.. in order; maintenance backends are not here."""
    count: int = 0
    """Slots 1..count take new connections."""
    maintenance: tuple[Backend, ...] = field(default=())
    """Kept as backend rows (existing flows), never in a slot."""

    @property
    def qcount(self) -> int:
        return len(self.slots) - self.count

    @property
    def selectable(self) -> tuple[Backend, ...]:
        return self.slots[: self.count]


def exposure_type(service: Service) -> SVCType | None:
    """The type ``service.cilium.io/type`` restricts frontends to, or None (no or bad value)."""
    value = service.annotations.get(TYPE_ANNOTATION)
    try:
        typ = SVCType(value) if value is not None else None
    except ValueError:
        return None
    return typ if typ in _EXPOSABLE else None


def two_scopes(service: Service) -> bool:
    """Exactly one of externalTrafficPolicy / internalTrafficPolicy is Local."""
    etp_local = service.external_traffic_policy is TrafficPolicy.LOCAL
    return etp_local != (service.internal_traffic_policy is TrafficPolicy.LOCAL)


def frontends(
    service: Service,
    *,
    node_addresses: Sequence[IPAddress] = (),
    kube_proxy_replacement: bool = True,
) -> tuple[Frontend, ...]:
    """Every frontend of ``service`` on a node with ``node_addresses`` (NodePort addresses)."""
    if service.headless:
        return ()
    only = exposure_type(service)
    scopes = (Scope.EXTERNAL, Scope.INTERNAL) if two_scopes(service) else (Scope.EXTERNAL,)
    out: list[Frontend] = []

    def add(typ: SVCType, ip: IPAddress, port: int, p_index: int, scope: Scope) -> None:
        sp = service.ports[p_index]
        out.append(
            Frontend(
                address=L3n4Addr(ip, port, sp.protocol, scope),
                type=typ,
                service=service.name,
                port_name=sp.name,
                service_port=sp.port,
            )
        )

    if only in (None, SVCType.CLUSTER_IP):
        for ip in service.cluster_addresses:
            for i, sp in enumerate(service.ports):
                add(SVCType.CLUSTER_IP, ip, sp.port, i, Scope.EXTERNAL)
    if (
        kube_proxy_replacement
        and service.type in ("NodePort", "LoadBalancer")
        and only in (None, SVCType.NODE_PORT)
    ):
        families = sorted({ip.version for ip in service.cluster_addresses})
        for scope in scopes:
            for version in families:
                unspecified = ipaddress.ip_address("0.0.0.0" if version == 4 else "::")
                addrs = [unspecified, *(a for a in node_addresses if a.version == version)]
                for i, sp in enumerate(service.ports):
                    if sp.node_port:
                        for ip in addrs:
                            add(SVCType.NODE_PORT, ip, sp.node_port, i, scope)
    if service.type == "LoadBalancer" and only in (None, SVCType.LOAD_BALANCER):
        for ip in service.lb_ingress_ips:
            for scope in scopes:
                for i, sp in enumerate(service.ports):
                    add(SVCType.LOAD_BALANCER, ip, sp.port, i, scope)
    for ip in service.external_ips:
        for scope in scopes:
            for i, sp in enumerate(service.ports):
                add(SVCType.EXTERNAL_IPS, ip, sp.port, i, scope)
    return tuple(out)


def endpoint_state(ep: Endpoint) -> BackendState:
    """EndpointSlice conditions -> backend state (facts §4.4, kube-proxy's reading of them)."""
    if ep.ready:
        return BackendState.ACTIVE
    if ep.terminating:
        return BackendState.TERMINATING if ep.serving else BackendState.TERMINATING_NOT_SERVING
    return BackendState.MAINTENANCE


def backends(service: Service, slices: Iterable[EndpointSlice]) -> tuple[Backend, ...]:
    """The service's backends from its EndpointSlices, one per address+port+protocol.

    A backend listed in several slices keeps the union of its port names and its best state.
    """
    merged: dict[L3n4Addr, Backend] = {}
    for es in slices:
        if es.service != service.name:
            continue
        for ep in es.endpoints:
            state = endpoint_state(ep)
            weight = DEFAULT_BACKEND_WEIGHT if es.weight is None else es.weight
            if weight == 0:
                state = BackendState.MAINTENANCE
            for ip in ep.addresses:
                for port in es.ports:
                    addr = L3n4Addr(ip, port.port, port.protocol)
                    names = (port.name,) if port.name else ()
                    new = Backend(
                        address=addr,
                        state=state,
                        port_names=names,
                        node_name=ep.node_name,
                        zone=ep.zone,
                        weight=weight or DEFAULT_BACKEND_WEIGHT,
                    )
                    old = merged.get(addr)
                    if old is not None:
                        best = old if old.state.order <= new.state.order else new
                        names = tuple(sorted({*old.port_names, *names}))
                        new = replace(best, port_names=names)
                    merged[addr] = new
    return tuple(sorted(merged.values(), key=lambda b: b.address.sort_key()))


def scope_policy(service: Service, frontend: Frontend) -> TrafficPolicy:
    """The traffic policy that decides locality for this frontend (facts §4.3 matrix).

    ClusterIP: internalTrafficPolicy. NodePort / LoadBalancer / ExternalIPs: the external
    scope follows externalTrafficPolicy, the internal scope (``/i``) internalTrafficPolicy.
    HostPort backends are the pod on this node: no policy applies.
    """
    if frontend.type is SVCType.CLUSTER_IP:
        return service.internal_traffic_policy
    if frontend.type is SVCType.HOST_PORT:
        return TrafficPolicy.CLUSTER
    if frontend.address.scope is Scope.INTERNAL:
        return service.internal_traffic_policy
    return service.external_traffic_policy


def _slot_key(b: Backend) -> tuple[int, tuple[int, int, int, str, int]]:
    return (b.state.order, b.address.sort_key())


def select(
    service: Service, frontend: Frontend, candidates: Iterable[Backend], *, node_name: str
) -> Selection:
    """Which backends ``frontend`` uses on node ``node_name``, in slot order, with counts.

    With a Local policy only backends whose ``nodeName`` is this node are used; there is no
    fallback to remote backends (no local backend: the frontend has no slots and drops).
    """
    local_only = scope_policy(service, frontend) is TrafficPolicy.LOCAL
    chosen = [
        b
        for b in candidates
        if (not frontend.port_name or frontend.port_name in b.port_names)
        and b.address.protocol is frontend.address.protocol
        and (not local_only or b.node_name == node_name)
    ]
    chosen.sort(key=_slot_key)
    slots = tuple(b for b in chosen if b.state is not BackendState.MAINTENANCE)
    maintenance = tuple(b for b in chosen if b.state is BackendState.MAINTENANCE)
    active = sum(1 for b in slots if b.state is BackendState.ACTIVE)
    terminating = sum(1 for b in slots if b.state is BackendState.TERMINATING)
    return Selection(
        frontend=frontend,
        slots=slots,
        count=active or terminating,
        maintenance=maintenance,
    )


def hostport_frontends(
    pod: ServiceName,
    pod_ip: IPAddress,
    port_mappings: Sequence[Mapping[str, object]],
    *,
    node_name: str,
    node_addresses: Sequence[IPAddress] = (),
) -> tuple[Selection, ...]:
    """HostPort frontends from a pod's CNI ``portMappings`` capability, each with its pod.

    A mapping without ``hostIP`` is exposed on the surrogate address and every node address
    of the pod's family, like NodePort; with one, only there.
    """
    out: list[Selection] = []
    for m in port_mappings:
        host_port = int(str(m["hostPort"]))
        container_port = int(str(m["containerPort"]))
        proto = Protocol.parse(str(m.get("protocol") or "tcp"))
        host_ip = str(m.get("hostIP") or "")
        if host_ip:
            addrs: list[IPAddress] = [ipaddress.ip_address(host_ip)]
        else:
            unspecified = ipaddress.ip_address("0.0.0.0" if pod_ip.version == 4 else "::")
            addrs = [unspecified, *(a for a in node_addresses if a.version == pod_ip.version)]
        backend = Backend(address=L3n4Addr(pod_ip, container_port, proto), node_name=node_name)
        name = ServiceName(pod.namespace, f"{pod.name}/host-port/{host_port}")
        for ip in addrs:
            fe = Frontend(
                address=L3n4Addr(ip, host_port, proto),
                type=SVCType.HOST_PORT,
                service=name,
                service_port=host_port,
            )
            out.append(Selection(frontend=fe, slots=(backend,), count=1))
    return tuple(out)


# --- node exposure: service.cilium.io/node and service.cilium.io/node-selector --------------

_TERM = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9._-]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<vals>[^)]*)\))?\s*$"
)


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label-selector string (``a=b,c!=d,e in (x,y),!f,g``) against labels.

    ValueError for text that is not a selector.
    """
    terms = re.split(r",(?![^(]*\))", selector)
    for term in terms:
        if not term.strip():
            continue
        m = _TERM.match(term)
        if m is None or (m["neg"] and (m["op"] or m["set"])):
            raise ValueError(f"invalid label selector term {term.strip()!r}")
        key, value = m["key"], labels.get(m["key"])
        if m["neg"]:
            ok = value is None
        elif m["op"] in ("=", "=="):
            ok = value == m["val"]
        elif m["op"] == "!=":
            ok = value != m["val"]
        elif m["set"]:
            values = {v.strip() for v in m["vals"].split(",") if v.strip()}
            ok = (value in values) if m["set"] == "in" else (value not in values)
        else:
            ok = key in labels
        if not ok:
            return False
    return True


def node_exposes(annotations: Mapping[str, str], node_labels: Mapping[str, str]) -> bool:
    """Is the service installed on a node with these labels? (``CheckServiceNodeExposure``)

    ``node-selector`` wins over ``node``; a selector that does not parse is ignored, as
    upstream does (it warns and installs the service).
    """
    selector = annotations.get(NODE_SELECTOR_ANNOTATION)
    if selector is not None:
        try:
            return selector_matches(selector, node_labels)
        except ValueError:
            return True
    wanted = annotations.get(NODE_ANNOTATION)
    return wanted is None or node_labels.get(NODE_ANNOTATION) == wanted
