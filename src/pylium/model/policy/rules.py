"""L1: typed Cilium policy rules (``pkg/policy/api``): a :class:`Rule` has a subject
(``endpointSelector`` or ``nodeSelector``) and four sections of :class:`PeerRule`
(``ingress``, ``ingressDeny``, ``egress``, ``egressDeny``). Selector keys always carry a label
source (``any:app``, ``k8s:io.kubernetes.pod.namespace``, ``reserved:host``)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field, replace

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ANY_SOURCE = "any"
K8S_SOURCE = "k8s"
NAMESPACE_KEY = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
CLUSTER_KEY = "io.cilium.k8s.policy.cluster"
POLICY_DERIVED_FROM = "io.cilium.k8s.policy.derived-from"
POLICY_NAME = "io.cilium.k8s.policy.name"
POLICY_NAMESPACE = "io.cilium.k8s.policy.namespace"
POLICY_UID = "io.cilium.k8s.policy.uid"
POLICY_NAME_ANNOTATIONS = ("policy.cilium.io/name", "io.cilium.k8s.policy.name")

CNP = "CiliumNetworkPolicy"
CCNP = "CiliumClusterwideNetworkPolicy"
KNP = "NetworkPolicy"


class Operator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, slots=True, order=True)
class Requirement:
    """One ``matchExpressions`` entry; ``key`` is ``source:key``."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class LabelSelector:
    """A label selector whose keys all carry a source (``any:app``, ``reserved:host``).

    Both tuples are sorted, so equal selectors compare and hash equal (the selector cache
    keys on them). The empty selector is the wildcard: it selects every identity.
    """

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_wildcard(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def has_key(self, key: str) -> bool:
        return any(k == key for k, _ in self.match_labels) or any(
            r.key == key for r in self.match_expressions
        )

    def has_key_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k, _ in self.match_labels) or any(
            r.key.startswith(prefix) for r in self.match_expressions
        )

    def with_match(self, key: str, value: str) -> LabelSelector:
        """This selector plus ``key=value``, replacing an earlier value of the key."""
        kept = tuple(kv for kv in self.match_labels if kv[0] != key)
        return replace(self, match_labels=tuple(sorted((*kept, (key, value)))))

    def with_requirement(self, requirement: Requirement) -> LabelSelector:
        return replace(
            self, match_expressions=tuple(sorted((*self.match_expressions, requirement)))
        )

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.match_expressions:
            values = f" ({','.join(r.values)})" if r.values else ""
            parts.append(f"{r.key} {r.operator}{values}")
        return "{" + ", ".join(parts) + "}"


class Entity(enum.StrEnum):
    ALL = "all"
    WORLD = "world"
    WORLD_IPV4 = "world-ipv4"
    WORLD_IPV6 = "world-ipv6"
    CLUSTER = "cluster"
    HOST = "host"
    REMOTE_NODE = "remote-node"
    KUBE_APISERVER = "kube-apiserver"
    INGRESS = "ingress"
    HEALTH = "health"
    INIT = "init"
    UNMANAGED = "unmanaged"
    NONE = "none"


class Protocol(enum.StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"
    ICMP = "ICMP"
    ICMPV6 = "ICMPv6"
    VRRP = "VRRP"
    IGMP = "IGMP"
    ANY = "ANY"


@dataclass(frozen=True, slots=True, order=True)
class CIDRRule:
    """``fromCIDRSet``/``toCIDRSet`` entry (a bare ``fromCIDR`` has no ``except``)."""

    cidr: IPNetwork
    except_: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PortProtocol:
    """One port of a ``toPorts`` entry: a number (0: any port) or a named port."""

    port: int = 0
    name: str = ""
    end_port: int = 0
    protocol: Protocol = Protocol.ANY


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRule:
    ports: tuple[PortProtocol, ...] = ()
    has_l7: bool = False
    """L7 rules are present; pylium enforces their L4 part only (no proxy yet)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ICMPField:
    family: str = "IPv4"
    type: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRule:
    """One entry of ``ingress``/``ingressDeny`` (``from*``) or ``egress``/``egressDeny`` (``to*``).

    A rule without any peer but with ports or ICMP types applies to every peer (L4-only rule);
    a rule with neither allows nothing but still puts the endpoint into default deny.
    """

    endpoints: tuple[LabelSelector, ...] = ()
    entities: tuple[Entity, ...] = ()
    cidr: tuple[IPNetwork, ...] = ()
    cidr_set: tuple[CIDRRule, ...] = ()
    nodes: tuple[LabelSelector, ...] = ()
    to_ports: tuple[PortRule, ...] = ()
    icmps: tuple[ICMPField, ...] = ()
    unsupported: tuple[str, ...] = ()
    """Peer fields present but not enforced by pylium (toFQDNs, toServices, *Groups)."""

    @property
    def has_peers(self) -> bool:
        return bool(
            self.endpoints
            or self.entities
            or self.cidr
            or self.cidr_set
            or self.nodes
            or self.unsupported
        )


IngressRule = PeerRule
EgressRule = PeerRule


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultDeny:
    """``enableDefaultDeny``; None means unset, which counts as true."""

    ingress: bool | None = None
    egress: bool | None = None


@dataclass(frozen=True, slots=True, order=True)
class PolicyRef:
    """Which policy object and which of its rules: ``CiliumNetworkPolicy ns/name[1]``."""

    kind: str
    namespace: str
    name: str
    index: int = 0

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}[{self.index}]" if self.kind else where


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    endpoint_selector: LabelSelector | None = None
    node_selector: LabelSelector | None = None
    ingress: tuple[PeerRule, ...] = ()
    ingress_deny: tuple[PeerRule, ...] = ()
    egress: tuple[PeerRule, ...] = ()
    egress_deny: tuple[PeerRule, ...] = ()
    labels: tuple[str, ...] = ()
    """Rule labels, ``source:key=value``, sorted; includes the derived policy labels."""
    enable_default_deny: DefaultDeny = field(default_factory=DefaultDeny)
    description: str = ""
    index: int = 0
    """Position of the rule in its object (``spec`` is 0, then ``specs`` in order)."""

    @property
    def ref(self) -> PolicyRef:
        values = {}
        for text in self.labels:
            key, _, value = text.partition(":")[2].partition("=")
            values[key] = value
        return PolicyRef(
            values.get(POLICY_DERIVED_FROM, ""),
            values.get(POLICY_NAMESPACE, ""),
            values.get(POLICY_NAME, ""),
            self.index,
        )
