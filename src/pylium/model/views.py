"""L1: typed, read-only views of the kinds the cores read: Node, CiliumNode, Namespace, Pod and
CiliumPodIPPool.

A view is built from a validated :class:`~pylium.model.resource.Resource` (see
:mod:`pylium.model.codec`), so it trusts the shape and only converts: CIDRs and addresses
become ``ipaddress`` objects, absent fields become empty tuples, empty strings or None. Field
names follow the YAML keys (``spec.ipam.podCIDRs`` -> ``pod_cidrs``). The body stays the
source of truth: a view is never written back.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pylium.base.errors import Location, ValidationError
from pylium.base.netaddr import Address, Network
from pylium.model.resource import Resource

_T = TypeVar("_T")


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _nets(values: Any) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(str(v), strict=False) for v in _list(values))


def _addr(value: Any) -> Address | None:
    return ipaddress.ip_address(str(value)) if value else None


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items()}


def _expect(resource: Resource, kind: str) -> None:
    if resource.kind != kind:
        raise ValidationError(
            [(Location(path=("kind",)), f'Invalid value: "{resource.kind}": expected {kind}')]
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @classmethod
    def from_resource(cls, resource: Resource) -> Namespace:
        _expect(resource, "Namespace")
        meta = resource.metadata
        return cls(
            name=resource.name,
            labels=_strings(meta.get("labels")),
            annotations=_strings(meta.get("annotations")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAddress:
    """``status.addresses[]`` of a Node (type InternalIP, ExternalIP, Hostname, ...)."""

    type: str
    address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    pod_cidrs: tuple[Network, ...]
    """``spec.podCIDRs``, or ``[spec.podCIDR]`` when only the singular field is set."""
    provider_id: str
    unschedulable: bool
    addresses: tuple[NodeAddress, ...]

    @classmethod
    def from_resource(cls, resource: Resource) -> Node:
        _expect(resource, "Node")
        meta, spec = resource.metadata, _map(resource.body.get("spec"))
        cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
        return cls(
            name=resource.name,
            labels=_strings(meta.get("labels")),
            annotations=_strings(meta.get("annotations")),
            pod_cidrs=_nets(cidrs),
            provider_id=str(spec.get("providerID") or ""),
            unschedulable=bool(spec.get("unschedulable")),
            addresses=tuple(
                NodeAddress(type=str(a["type"]), address=str(a["address"]))
                for a in _list(_map(resource.body.get("status")).get("addresses"))
            ),
        )

    def address(self, address_type: str = "InternalIP") -> str | None:
        """The first address of this type (``InternalIP``, ``ExternalIP``, ``Hostname``)."""
        return next((a.address for a in self.addresses if a.type == address_type), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class IPOwner:
    """Value of ``spec.ipam.pool`` / ``status.ipam.used`` entries: who holds an address."""

    owner: str
    resource: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CiliumNodeAddress:
    type: str
    """InternalIP, ExternalIP, CiliumInternalIP, ..."""
    ip: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolRequest:
    """``spec.ipam.pools.requested[]``: addresses the agent needs from a multi-pool pool."""

    pool: str
    ipv4_addrs: int
    ipv6_addrs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolAllocation:
    """``spec.ipam.pools.allocated[]``: CIDRs the operator handed to the node from a pool."""

    pool: str
    cidrs: tuple[Network, ...]
    allow_first_ip: bool
    allow_last_ip: bool


def _owners(value: Any) -> dict[str, IPOwner]:
    return {
        str(ip): IPOwner(
            owner=str(_map(v).get("owner", "")), resource=str(_map(v).get("resource", ""))
        )
        for ip, v in _map(value).items()
    }


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class CiliumNode:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    instance_id: str
    """``spec.instance-id`` (the cloud instance; the node name outside clouds)."""
    boot_id: str
    addresses: tuple[CiliumNodeAddress, ...]
    health_ipv4: Address | None
    health_ipv6: Address | None
    pod_cidrs: tuple[Network, ...]
    """``spec.ipam.podCIDRs`` (cluster-pool: written by the operator)."""
    pool: Mapping[str, IPOwner]
    """``spec.ipam.pool`` (ENI/Azure: addresses available to the node)."""
    pools_requested: tuple[PoolRequest, ...]
    pools_allocated: tuple[PoolAllocation, ...]
    pre_allocate: int | None
    min_allocate: int | None
    max_allocate: int | None
    max_above_watermark: int | None
    used: Mapping[str, IPOwner]
    """``status.ipam.used``: address -> owner."""
    pod_cidr_status: Mapping[str, str]
    """``status.ipam.pod-cidrs``: CIDR -> ``in-use`` | ``depleted`` | ``released``."""
    operator_error: str
    """``status.ipam.operator-status.error``; empty when the operator reports nothing."""

    @classmethod
    def from_resource(cls, resource: Resource) -> CiliumNode:
        _expect(resource, "CiliumNode")
        meta, spec = resource.metadata, _map(resource.body.get("spec"))
        ipam = _map(spec.get("ipam"))
        pools = _map(ipam.get("pools"))
        status = _map(_map(resource.body.get("status")).get("ipam"))
        health = _map(spec.get("health"))
        return cls(
            name=resource.name,
            labels=_strings(meta.get("labels")),
            annotations=_strings(meta.get("annotations")),
            instance_id=str(spec.get("instance-id") or ""),
            boot_id=str(spec.get("bootid") or ""),
            addresses=tuple(
                CiliumNodeAddress(type=str(a["type"]), ip=ipaddress.ip_address(str(a["ip"])))
                for a in _list(spec.get("addresses"))
            ),
            health_ipv4=_addr(health.get("ipv4")),
            health_ipv6=_addr(health.get("ipv6")),
            pod_cidrs=_nets(ipam.get("podCIDRs")),
            pool=_owners(ipam.get("pool")),
            pools_requested=tuple(
                PoolRequest(
                    pool=str(r["pool"]),
                    ipv4_addrs=int(_map(r.get("needed")).get("ipv4-addrs") or 0),
                    ipv6_addrs=int(_map(r.get("needed")).get("ipv6-addrs") or 0),
                )
                for r in _list(pools.get("requested"))
            ),
            pools_allocated=tuple(
                PoolAllocation(
                    pool=str(a["pool"]),
                    cidrs=_nets(a.get("cidrs")),
                    allow_first_ip=bool(a.get("allowFirstIP")),
                    allow_last_ip=bool(a.get("allowLastIP")),
                )
                for a in _list(pools.get("allocated"))
            ),
            pre_allocate=_optional_int(ipam.get("pre-allocate")),
            min_allocate=_optional_int(ipam.get("min-allocate")),
            max_allocate=_optional_int(ipam.get("max-allocate")),
            max_above_watermark=_optional_int(ipam.get("max-above-watermark")),
            used=_owners(status.get("used")),
            pod_cidr_status={
                str(cidr): str(_map(entry).get("status", ""))
                for cidr, entry in _map(status.get("pod-cidrs")).items()
            },
            operator_error=str(_map(status.get("operator-status")).get("error") or ""),
        )

    def address(self, address_type: str = "InternalIP") -> Address | None:
        """The first address of this type (``InternalIP``, ``CiliumInternalIP``, ...)."""
        return next((a.ip for a in self.addresses if a.type == address_type), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerPort:
    container: str
    name: str
    """Empty when the port has no name."""
    port: int
    protocol: str
    """TCP (the default), UDP or SCTP."""
    host_port: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    node_name: str
    host_network: bool
    ports: tuple[ContainerPort, ...]
    """Every declared port of the regular containers, in container order."""
    phase: str
    pod_ips: tuple[Address, ...]
    """``status.podIPs``, or ``[status.podIP]`` when only the singular field is set."""
    host_ip: Address | None

    @classmethod
    def from_resource(cls, resource: Resource) -> Pod:
        _expect(resource, "Pod")
        meta, spec = resource.metadata, _map(resource.body.get("spec"))
        status = _map(resource.body.get("status"))
        ips = [p.get("ip") for p in _list(status.get("podIPs")) if isinstance(p, Mapping)]
        if not ips and status.get("podIP"):
            ips = [status["podIP"]]
        return cls(
            namespace=resource.namespace,
            name=resource.name,
            labels=_strings(meta.get("labels")),
            annotations=_strings(meta.get("annotations")),
            node_name=str(spec.get("nodeName") or ""),
            host_network=bool(spec.get("hostNetwork")),
            ports=tuple(
                ContainerPort(
                    container=str(c.get("name", "")),
                    name=str(p.get("name") or ""),
                    port=int(p["containerPort"]),
                    protocol=str(p.get("protocol") or "TCP"),
                    host_port=_optional_int(p.get("hostPort")),
                )
                for c in _list(spec.get("containers"))
                for p in _list(_map(c).get("ports"))
            ),
            phase=str(status.get("phase") or ""),
            pod_ips=tuple(ipaddress.ip_address(str(ip)) for ip in ips if ip),
            host_ip=_addr(status.get("hostIP")),
        )

    @property
    def pod_ip(self) -> Address | None:
        """The primary pod IP (``status.podIP``), if one has been assigned."""
        return self.pod_ips[0] if self.pod_ips else None

    @property
    def named_ports(self) -> Mapping[str, ContainerPort]:
        """Named ports by name; the first container to declare a name wins, as in Cilium."""
        out: dict[str, ContainerPort] = {}
        for port in self.ports:
            if port.name:
                out.setdefault(port.name, port)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class IPPoolFamily:
    cidrs: tuple[Network, ...]
    mask_size: int
    """Prefix length of the chunks handed to nodes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CiliumPodIPPool:
    name: str
    ipv4: IPPoolFamily | None
    ipv6: IPPoolFamily | None
    allow_first_ip: bool
    allow_last_ip: bool
    pod_selector: Mapping[str, Any] | None
    """The raw label selector (``matchLabels``/``matchExpressions``), as validated."""
    namespace_selector: Mapping[str, Any] | None

    @classmethod
    def from_resource(cls, resource: Resource) -> CiliumPodIPPool:
        _expect(resource, "CiliumPodIPPool")
        spec = _map(resource.body.get("spec"))

        def family(key: str) -> IPPoolFamily | None:
            raw = spec.get(key)
            if not isinstance(raw, Mapping):
                return None
            return IPPoolFamily(cidrs=_nets(raw.get("cidrs")), mask_size=int(raw["maskSize"]))

        pod_sel, ns_sel = spec.get("podSelector"), spec.get("namespaceSelector")
        return cls(
            name=resource.name,
            ipv4=family("ipv4"),
            ipv6=family("ipv6"),
            allow_first_ip=bool(spec.get("allowFirstIP")),
            allow_last_ip=bool(spec.get("allowLastIP")),
            pod_selector=pod_sel if isinstance(pod_sel, Mapping) else None,
            namespace_selector=ns_sel if isinstance(ns_sel, Mapping) else None,
        )


View = Namespace | Node | CiliumNode | Pod | CiliumPodIPPool

VIEWS: Mapping[str, Callable[[Resource], View]] = {
    "Namespace": Namespace.from_resource,
    "Node": Node.from_resource,
    "CiliumNode": CiliumNode.from_resource,
    "Pod": Pod.from_resource,
    "CiliumPodIPPool": CiliumPodIPPool.from_resource,
}
"""Kind -> view constructor, for the kinds that have a typed view."""


def view(resource: Resource, cls: type[_T]) -> _T:
    """The typed view ``cls`` of ``resource``; a ValidationError when the kind does not match.

    ``view(res, CiliumNode).pod_cidrs``; the kind is checked, so a caller cannot read a Node
    as a CiliumNode by mistake."""
    build = VIEWS.get(resource.kind)
    built = build(resource) if build is not None else None
    if not isinstance(built, cls):
        raise ValidationError(
            [
                (
                    Location(path=("kind",)),
                    f'Invalid value: "{resource.kind}": expected {cls.__name__}',
                )
            ]
        )
    return built
