"""L2: the parts of ``v1`` Service and ``discovery.k8s.io/v1`` EndpointSlice the load balancer
reads, parsed from their plain-dict form into small frozen dataclasses.

Defaults are Kubernetes': ``type`` ClusterIP, port ``protocol`` TCP, traffic policies Cluster,
``allocateLoadBalancerNodePorts`` true, ClientIP affinity timeout 10800 s; an endpoint whose
``ready`` is unset counts as ready, an unset ``serving`` defers to ``ready``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pylium.base.errors import Location, ValidationError
from pylium.core.lb.addr import IPAddress, Protocol, ServiceName, TrafficPolicy, parse_ip

DEFAULT_AFFINITY_TIMEOUT = 10800
"""``DefaultClientIPServiceAffinitySeconds``: three hours."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
WEIGHT_ANNOTATION = "service.cilium.io/weight"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    name: str = ""
    protocol: Protocol = Protocol.TCP
    port: int
    node_port: int = 0
    """0 when none was given or allocated."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    name: ServiceName
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()
    """As written (``None`` for headless); the first one is ``spec.clusterIP``."""
    ports: tuple[ServicePort, ...] = ()
    external_ips: tuple[IPAddress, ...] = ()
    lb_ingress_ips: tuple[IPAddress, ...] = ()
    """``status.loadBalancer.ingress[].ip`` with ipMode VIP (or unset)."""
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    internal_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    session_affinity: bool = False
    affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT
    allocate_lb_node_ports: bool = True
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def headless(self) -> bool:
        """``clusterIP: None`` or the ``service.kubernetes.io/headless`` label."""
        first = self.cluster_ips[0] if self.cluster_ips else ""
        return first.lower() == "none" or HEADLESS_LABEL in self.labels

    @property
    def cluster_addresses(self) -> tuple[IPAddress, ...]:
        """Parsed cluster IPs, sorted like upstream; unparsable ones are skipped, as there."""
        out = []
        for text in sorted(set(self.cluster_ips)):
            try:
                out.append(parse_ip(text))
            except ValueError:
                continue
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointPort:
    name: str = ""
    protocol: Protocol = Protocol.TCP
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    addresses: tuple[IPAddress, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    zone: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    name: str
    service: ServiceName
    ports: tuple[EndpointPort, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    weight: int | None = None
    """``service.cilium.io/weight`` on the slice; 0 puts its backends in maintenance."""


class _Reader:
    """Collects problems with their field paths so one error lists them all. A field's path
    is given as its parent's and the field's own parts, joined only for a problem (a full
    resync reads every field of every document)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[tuple[Location, str]] = []

    def fail(self, path: Sequence[str | int], message: str) -> None:
        self.problems.append((Location(source=self.source, path=tuple(path)), message))

    def check(self) -> None:
        if self.problems:
            raise ValidationError(self.problems)

    def mapping(self, doc: Mapping[str, Any], key: str, path: Sequence[str | int]) -> Any:
        value = doc.get(key) or {}
        if type(value) is not dict and not isinstance(value, Mapping):  # dict: the quick test
            self.fail([*path, key], "must be an object")
            return {}
        return value

    def items(self, doc: Mapping[str, Any], key: str, path: Sequence[str | int]) -> list[Any]:
        value = doc.get(key) or []
        if not isinstance(value, list):
            self.fail([*path, key], "must be a list")
            return []
        return value

    def ip(self, text: Any, *path: str | int) -> IPAddress | None:
        try:
            return parse_ip(str(text))
        except ValueError:
            self.fail(path, f"{text!r} is not an IP address")
            return None

    def port(self, value: Any, *path: str | int, zero_ok: bool = False) -> int:
        if type(value) is int and 0 < value <= 65535:
            return value
        low = 0 if zero_ok else 1
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 65535:
            self.fail(path, f"must be an integer between {low} and 65535, got {value!r}")
            return 0
        return value

    def protocol(self, value: Any, *path: str | int) -> Protocol:
        try:
            return Protocol.parse(str(value or "TCP"))
        except ValueError:
            self.fail(path, f"unsupported protocol {value!r} (TCP, UDP, SCTP)")
            return Protocol.TCP

    def policy(self, value: Any, *path: str | int) -> TrafficPolicy:
        if value in (None, ""):
            return TrafficPolicy.CLUSTER
        try:
            return TrafficPolicy(value)
        except ValueError:
            self.fail(path, f"must be Cluster or Local, got {value!r}")
            return TrafficPolicy.CLUSTER


def _meta(doc: Mapping[str, Any], r: _Reader) -> tuple[ServiceName, Mapping[str, Any]]:
    meta = r.mapping(doc, "metadata", [])
    name = meta.get("name")
    if not name:
        r.fail(["metadata", "name"], "is required")
    return ServiceName(str(meta.get("namespace") or "default"), str(name or "")), meta


def parse_service(doc: Mapping[str, Any], *, source: str = "") -> Service:
    """A ``v1`` Service dict as a :class:`Service`; ValidationError names each bad field."""
    r = _Reader(source)
    name, meta = _meta(doc, r)
    spec = r.mapping(doc, "spec", [])
    status = r.mapping(doc, "status", [])
    ports = []
    for i, p in enumerate(r.items(spec, "ports", ["spec"])):
        ports.append(
            ServicePort(
                name=str(p.get("name") or ""),
                protocol=r.protocol(p.get("protocol"), "spec", "ports", i, "protocol"),
                port=r.port(p.get("port"), "spec", "ports", i, "port"),
                node_port=r.port(
                    p.get("nodePort") or 0, "spec", "ports", i, "nodePort", zero_ok=True
                ),
            )
        )
    cluster_ips = tuple(str(ip) for ip in r.items(spec, "clusterIPs", ["spec"]))
    if not cluster_ips and spec.get("clusterIP"):
        cluster_ips = (str(spec["clusterIP"]),)
    external = [
        r.ip(ip, "spec", "externalIPs", i)
        for i, ip in enumerate(r.items(spec, "externalIPs", ["spec"]))
    ]
    ingress = []
    lb = r.mapping(status, "loadBalancer", ["status"])
    for i, ing in enumerate(r.items(lb, "ingress", ["status", "loadBalancer"])):
        if not ing.get("ip") or ing.get("ipMode") not in (None, "VIP"):
            continue  # hostname-only ingress, or KEP-1860 ipMode Proxy: not a VIP here
        ingress.append(r.ip(ing["ip"], "status", "loadBalancer", "ingress", i, "ip"))
    affinity = spec.get("sessionAffinity") == "ClientIP"
    timeout = (
        ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    ) or DEFAULT_AFFINITY_TIMEOUT
    if not isinstance(timeout, int) or not 0 < timeout <= 86400:
        r.fail(
            ["spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"],
            f"must be an integer between 1 and 86400, got {timeout!r}",
        )
        timeout = DEFAULT_AFFINITY_TIMEOUT
    etp = r.policy(spec.get("externalTrafficPolicy"), "spec", "externalTrafficPolicy")
    itp = r.policy(spec.get("internalTrafficPolicy"), "spec", "internalTrafficPolicy")
    r.check()
    return Service(
        name=name,
        type=str(spec.get("type") or "ClusterIP"),
        cluster_ips=cluster_ips,
        ports=tuple(ports),
        external_ips=tuple(ip for ip in external if ip is not None),
        lb_ingress_ips=tuple(ip for ip in ingress if ip is not None),
        external_traffic_policy=etp,
        internal_traffic_policy=itp,
        session_affinity=affinity,
        affinity_timeout=timeout,
        allocate_lb_node_ports=spec.get("allocateLoadBalancerNodePorts") is not False,
        annotations=dict(meta.get("annotations") or {}),
        labels=dict(meta.get("labels") or {}),
    )


def parse_endpoint_slice(doc: Mapping[str, Any], *, source: str = "") -> EndpointSlice:
    """A ``discovery.k8s.io/v1`` EndpointSlice dict; FQDN slices carry no endpoints."""
    r = _Reader(source)
    slice_name, meta = _meta(doc, r)
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    if not service:
        r.fail(["metadata", "labels", SERVICE_NAME_LABEL], "is required")
    weight: int | None = None
    raw_weight = (meta.get("annotations") or {}).get(WEIGHT_ANNOTATION)
    if raw_weight is not None:
        try:
            weight = int(raw_weight)
            if not 0 <= weight <= 65535:
                raise ValueError
        except ValueError:
            r.fail(["metadata", "annotations", WEIGHT_ANNOTATION], "must be 0-65535")
    ports = tuple(
        EndpointPort(
            name=str(p.get("name") or ""),
            protocol=r.protocol(p.get("protocol"), "ports", i, "protocol"),
            port=r.port(p.get("port"), "ports", i, "port"),
        )
        for i, p in enumerate(r.items(doc, "ports", []))
    )
    endpoints = []
    if doc.get("addressType", "IPv4") in ("IPv4", "IPv6"):
        for i, ep in enumerate(r.items(doc, "endpoints", [])):
            path = ("endpoints", i)
            cond = r.mapping(ep, "conditions", path)
            ready = cond.get("ready") is not False
            addrs = [
                r.ip(a, *path, "addresses", j) for j, a in enumerate(r.items(ep, "addresses", path))
            ]
            endpoints.append(
                Endpoint(
                    addresses=tuple(a for a in addrs if a is not None),
                    ready=ready,
                    serving=ready if cond.get("serving") is None else bool(cond["serving"]),
                    terminating=bool(cond.get("terminating")),
                    node_name=str(ep.get("nodeName") or ""),
                    zone=str(ep.get("zone") or ""),
                )
            )
    r.check()
    return EndpointSlice(
        name=slice_name.name,
        service=ServiceName(slice_name.namespace, str(service)),
        ports=ports,
        endpoints=tuple(endpoints),
        weight=weight,
    )
