"""L1: typed Cilium policy rules, and their parsers from validated CNP, CCNP and NetworkPolicy.

The shapes follow ``pkg/policy/api``: a :class:`Rule` has a subject (``endpointSelector`` or
``nodeSelector``) and four sections of :class:`PeerRule` (``ingress``, ``ingressDeny``,
``egress``, ``egressDeny``). Parsing applies what the agent applies before a rule reaches the
repository (``pkg/k8s/apis/cilium.io/utils`` and ``pkg/k8s/network_policy.go``):

- selector keys get an explicit label source (``any`` unless the key names one, ``k8s`` for
  NetworkPolicy), so ``app`` becomes ``any:app``;
- a CNP's ``endpointSelector`` is pinned to the policy's namespace; its peer selectors are
  scoped to it unless they name the namespace or namespace labels; a CCNP's peer selectors
  require a namespace label (``Exists``) so that they never select non-pod identities;
- a NetworkPolicy becomes one Cilium rule as Cilium maps it (``policyTypes``, ``ipBlock`` ->
  CIDR set, ``namespaceSelector`` over ``io.cilium.k8s.namespace.labels.*``, empty peers);
- each rule carries the derived labels ``io.cilium.k8s.policy.{derived-from,name,namespace,
  uid}`` so that a verdict can name the policy.

Parsers take documents already validated by :mod:`pylium.model.codec`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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


# -- parsing ---------------------------------------------------------------------------------


def _with_source(key: str, default_source: str) -> str:
    source, sep, rest = key.partition(":")
    return key if sep and source and rest else f"{default_source}:{key}"


def parse_selector(
    raw: Mapping[str, Any] | None,
    *,
    default_source: str = ANY_SOURCE,
    key_prefix: str = "",
) -> LabelSelector:
    """A Kubernetes label selector with sources on its keys (``key_prefix`` goes before keys)."""
    raw = raw or {}
    labels = tuple(
        sorted(
            (_with_source(key_prefix + str(k), default_source), str(v))
            for k, v in (raw.get("matchLabels") or {}).items()
        )
    )
    exprs = tuple(
        sorted(
            Requirement(
                _with_source(key_prefix + str(e["key"]), default_source),
                Operator(e["operator"]),
                tuple(sorted(str(v) for v in e.get("values") or ())),
            )
            for e in raw.get("matchExpressions") or ()
        )
    )
    return LabelSelector(labels, exprs)


def _merge(a: LabelSelector, b: LabelSelector) -> LabelSelector:
    return LabelSelector(
        tuple(sorted({*a.match_labels, *b.match_labels})),
        tuple(sorted({*a.match_expressions, *b.match_expressions})),
    )


def _ns_keys(prefix: str) -> tuple[str, str]:
    return f"{K8S_SOURCE}:{prefix}", f"{ANY_SOURCE}:{prefix}"


def _scope_peer(
    sel: LabelSelector, namespace: str, cluster: str, matches_init: bool
) -> LabelSelector:
    """Cilium's ``getEndpointSelector``: the implicit namespace (and cluster) of a peer."""
    if sel.has_key_prefix("reserved:"):
        return sel
    if not any(sel.has_key(k) for k in _ns_keys(NAMESPACE_KEY)):
        if not namespace:
            if not matches_init:
                sel = sel.with_requirement(
                    Requirement(f"{K8S_SOURCE}:{NAMESPACE_KEY}", Operator.EXISTS)
                )
        elif not any(sel.has_key_prefix(k) for k in _ns_keys(NAMESPACE_LABELS_PREFIX)):
            sel = sel.with_match(f"{K8S_SOURCE}:{NAMESPACE_KEY}", namespace)
    return _scope_cluster(sel, cluster)


def _scope_cluster(sel: LabelSelector, cluster: str) -> LabelSelector:
    """``policy-default-local-cluster``: peers default to the local cluster when it is named."""
    if cluster and not any(sel.has_key(k) for k in _ns_keys(CLUSTER_KEY)):
        return sel.with_match(f"{K8S_SOURCE}:{CLUSTER_KEY}", cluster)
    return sel


def _net(text: str) -> IPNetwork:
    return ipaddress.ip_network(text, strict=False)


_ICMP_TYPES = {
    "IPv4": {
        "EchoReply": 0,
        "DestinationUnreachable": 3,
        "Redirect": 5,
        "Echo": 8,
        "EchoRequest": 8,
        "RouterAdvertisement": 9,
        "RouterSelection": 10,
        "TimeExceeded": 11,
        "ParameterProblem": 12,
        "Timestamp": 13,
        "TimestampReply": 14,
        "Photuris": 40,
        "ExtendedEchoRequest": 42,
        "ExtendedEchoReply": 43,
    },
    "IPv6": {
        "DestinationUnreachable": 1,
        "PacketTooBig": 2,
        "TimeExceeded": 3,
        "ParameterProblem": 4,
        "EchoRequest": 128,
        "EchoReply": 129,
        "MulticastListenerQuery": 130,
        "MulticastListenerReport": 131,
        "MulticastListenerDone": 132,
        "RouterSolicitation": 133,
        "RouterAdvertisement": 134,
        "NeighborSolicitation": 135,
        "NeighborAdvertisement": 136,
        "RedirectMessage": 137,
        "ExtendedEchoRequest": 160,
        "ExtendedEchoReply": 161,
    },
}


def _icmp_type(family: str, value: Any) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    return _ICMP_TYPES[family][str(value)]


def _port(raw: Mapping[str, Any], default_protocol: Protocol) -> PortProtocol:
    text = str(raw.get("port", "0") or "0")
    protocol = Protocol(raw.get("protocol") or default_protocol)
    end = int(raw.get("endPort") or 0)
    if text.isdigit():
        return PortProtocol(port=int(text), end_port=end, protocol=protocol)
    return PortProtocol(name=text.lower(), protocol=protocol)


def _peer_rule(
    raw: Mapping[str, Any], direction: str, namespace: str, cluster: str, matches_init: bool
) -> PeerRule:
    d = direction
    to_ports = tuple(
        PortRule(
            ports=tuple(_port(p, Protocol.ANY) for p in pr.get("ports") or ()),
            has_l7=bool(pr.get("rules")),
        )
        for pr in raw.get("toPorts") or ()
    )
    icmps = tuple(
        ICMPField(
            family=f.get("family", "IPv4"), type=_icmp_type(f.get("family", "IPv4"), f["type"])
        )
        for icmp in raw.get("icmps") or ()
        for f in icmp.get("fields") or ()
    )
    unsupported = tuple(k for k in (f"{d}Groups", "toFQDNs", "toServices") if raw.get(k))
    return PeerRule(
        endpoints=tuple(
            _scope_peer(parse_selector(s), namespace, cluster, matches_init)
            for s in raw.get(f"{d}Endpoints") or ()
        ),
        entities=tuple(Entity(e) for e in raw.get(f"{d}Entities") or ()),
        cidr=tuple(_net(c) for c in raw.get(f"{d}CIDR") or ()),
        cidr_set=tuple(
            CIDRRule(_net(c["cidr"]), tuple(_net(x) for x in c.get("except") or ()))
            for c in raw.get(f"{d}CIDRSet") or ()
            if c.get("cidr")
        ),
        nodes=tuple(parse_selector(s) for s in raw.get(f"{d}Nodes") or ()),
        to_ports=to_ports,
        icmps=icmps,
        unsupported=unsupported,
    )


def policy_labels(kind: str, namespace: str, name: str, uid: str) -> tuple[str, ...]:
    """The labels Cilium derives for a policy's rules (``GetPolicyLabels``)."""
    out = [f"k8s:{POLICY_DERIVED_FROM}={kind}", f"k8s:{POLICY_NAME}={name}"]
    if namespace:
        out.append(f"k8s:{POLICY_NAMESPACE}={namespace}")
    out.append(f"k8s:{POLICY_UID}={uid}")
    return tuple(out)


def parse_cilium_rule(
    raw: Mapping[str, Any],
    *,
    namespace: str,
    labels: Sequence[str],
    index: int = 0,
    cluster: str = "",
) -> Rule:
    """One ``spec`` of a CNP (``namespace`` set) or CCNP (``namespace`` empty)."""
    endpoint_selector = node_selector = None
    if raw.get("endpointSelector") is not None:
        endpoint_selector = parse_selector(raw["endpointSelector"])
        if namespace:
            endpoint_selector = endpoint_selector.with_match(f"k8s:{NAMESPACE_KEY}", namespace)
    elif raw.get("nodeSelector") is not None:
        node_selector = parse_selector(raw["nodeSelector"])
    matches_init = bool(endpoint_selector and endpoint_selector.has_key("reserved:init"))

    def section(key: str, direction: str) -> tuple[PeerRule, ...]:
        return tuple(
            _peer_rule(r, direction, namespace, cluster, matches_init) for r in raw.get(key) or ()
        )

    user_labels = (
        f"{lb.get('source') or 'unspec'}:{lb['key']}"
        + (f"={lb['value']}" if lb.get("value") else "")
        for lb in raw.get("labels") or ()
    )
    dd = raw.get("enableDefaultDeny") or {}
    return Rule(
        endpoint_selector=endpoint_selector,
        node_selector=node_selector,
        ingress=section("ingress", "from"),
        ingress_deny=section("ingressDeny", "from"),
        egress=section("egress", "to"),
        egress_deny=section("egressDeny", "to"),
        labels=tuple(sorted({*labels, *user_labels})),
        enable_default_deny=DefaultDeny(ingress=dd.get("ingress"), egress=dd.get("egress")),
        description=str(raw.get("description", "")),
        index=index,
    )


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata") or {}
    assert isinstance(meta, Mapping)
    return meta


def rules_from_cilium_policy(body: Mapping[str, Any], *, cluster: str = "") -> tuple[Rule, ...]:
    """A validated CNP or CCNP as rules: ``spec`` first (index 0), then ``specs``."""
    meta = _meta(body)
    clusterwide = body.get("kind") == CCNP
    namespace = "" if clusterwide else str(meta.get("namespace") or "default")
    labels = policy_labels(
        CCNP if clusterwide else CNP, namespace, str(meta.get("name", "")), str(meta.get("uid", ""))
    )
    specs: list[Mapping[str, Any]] = []
    if body.get("spec"):
        specs.append(body["spec"])
    specs.extend(body.get("specs") or ())
    return tuple(
        parse_cilium_rule(raw, namespace=namespace, labels=labels, index=i, cluster=cluster)
        for i, raw in enumerate(specs)
    )


def _np_peer(raw: Mapping[str, Any], namespace: str, cluster: str) -> LabelSelector | None:
    if raw.get("namespaceSelector") is not None:
        ns = parse_selector(
            raw["namespaceSelector"], default_source=K8S_SOURCE, key_prefix=NAMESPACE_LABELS_PREFIX
        )
        if ns.is_wildcard:
            ns = LabelSelector((), (Requirement(f"k8s:{NAMESPACE_KEY}", Operator.EXISTS),))
        pods = parse_selector(raw.get("podSelector"), default_source=K8S_SOURCE)
        return _scope_cluster(_merge(ns, pods), cluster)
    if raw.get("podSelector") is not None:
        pods = parse_selector(raw["podSelector"], default_source=K8S_SOURCE)
        return _scope_cluster(pods.with_match(f"k8s:{NAMESPACE_KEY}", namespace), cluster)
    return None


def _np_ports(ports: Iterable[Mapping[str, Any]]) -> tuple[PortRule, ...]:
    return tuple(
        PortRule(
            ports=(
                _port(
                    {
                        "port": p.get("port", 0),
                        "protocol": p.get("protocol"),
                        "endPort": p.get("endPort"),
                    },
                    Protocol.TCP,
                ),
            )
        )
        for p in ports
    )


def _np_section(
    entries: Iterable[Mapping[str, Any]], peers_key: str, namespace: str, cluster: str
) -> list[PeerRule]:
    out: list[PeerRule] = []
    for entry in entries:
        ports = _np_ports(entry.get("ports") or ())
        peers = entry.get(peers_key) or ()
        if not peers:
            # An empty from/to allows every peer, world included (the wildcard selector).
            out.append(PeerRule(endpoints=(LabelSelector(),), to_ports=ports))
        for peer in peers:
            sel = _np_peer(peer, namespace, cluster)
            block = peer.get("ipBlock")
            out.append(
                PeerRule(
                    endpoints=(sel,) if sel is not None else (),
                    cidr_set=(
                        (
                            CIDRRule(
                                _net(block["cidr"]),
                                tuple(_net(x) for x in block.get("except") or ()),
                            ),
                        )
                        if block
                        else ()
                    ),
                    to_ports=ports,
                )
            )
    return out


def rules_from_network_policy(body: Mapping[str, Any], *, cluster: str = "") -> tuple[Rule, ...]:
    """A validated ``networking.k8s.io/v1`` NetworkPolicy as the one rule Cilium makes of it."""
    meta = _meta(body)
    spec = body.get("spec") or {}
    namespace = str(meta.get("namespace") or "default")
    annotations = meta.get("annotations") or {}
    name = next((annotations[a] for a in POLICY_NAME_ANNOTATIONS if annotations.get(a)), None)
    types = set(spec.get("policyTypes") or ())
    ingress = _np_section(spec.get("ingress") or (), "from", namespace, cluster)
    egress = _np_section(spec.get("egress") or (), "to", namespace, cluster)
    if not ingress and ("Ingress" in types or "Egress" not in types):
        ingress = [PeerRule()]
    if not egress and "Egress" in types:
        egress = [PeerRule()]
    subject = parse_selector(spec.get("podSelector"), default_source=K8S_SOURCE)
    return (
        Rule(
            endpoint_selector=subject.with_match(f"k8s:{NAMESPACE_KEY}", namespace),
            ingress=tuple(ingress),
            egress=tuple(egress),
            labels=policy_labels(
                KNP, namespace, str(name or meta.get("name", "")), str(meta.get("uid", ""))
            ),
        ),
    )


def rules_from_object(body: Mapping[str, Any], *, cluster: str = "") -> tuple[Rule, ...]:
    """Rules of any of the three policy kinds; other kinds have none."""
    kind = body.get("kind")
    if kind in (CNP, CCNP):
        return rules_from_cilium_policy(body, cluster=cluster)
    if kind == KNP:
        return rules_from_network_policy(body, cluster=cluster)
    return ()
