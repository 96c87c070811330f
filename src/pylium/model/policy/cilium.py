"""L1: CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy documents as rules.

What the agent applies before a rule reaches the repository (``pkg/k8s/apis/cilium.io/utils``):
selector keys get an explicit source (``any`` unless named); a CNP's ``endpointSelector`` is
pinned to the policy's namespace and its peer selectors are scoped to it unless they name the
namespace or namespace labels; a CCNP's peer selectors require a namespace label (``Exists``);
with a cluster name (``policy-default-local-cluster``) peers are limited to that cluster. Each
rule carries the derived labels ``io.cilium.k8s.policy.{derived-from,name,namespace,uid}``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from pylium.model.policy.rules import (
    ANY_SOURCE,
    CCNP,
    CLUSTER_KEY,
    CNP,
    K8S_SOURCE,
    NAMESPACE_KEY,
    NAMESPACE_LABELS_PREFIX,
    POLICY_DERIVED_FROM,
    POLICY_NAME,
    POLICY_NAMESPACE,
    POLICY_UID,
    CIDRRule,
    DefaultDeny,
    Entity,
    ICMPField,
    IPNetwork,
    LabelSelector,
    Operator,
    PeerRule,
    PortProtocol,
    PortRule,
    Protocol,
    Requirement,
    Rule,
)


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


def merge_selectors(a: LabelSelector, b: LabelSelector) -> LabelSelector:
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
    return scope_cluster(sel, cluster)


def scope_cluster(sel: LabelSelector, cluster: str) -> LabelSelector:
    """``policy-default-local-cluster``: peers default to the local cluster when it is named."""
    if cluster and not any(sel.has_key(k) for k in _ns_keys(CLUSTER_KEY)):
        return sel.with_match(f"{K8S_SOURCE}:{CLUSTER_KEY}", cluster)
    return sel


def parse_net(text: str) -> IPNetwork:
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


def parse_port(raw: Mapping[str, Any], default_protocol: Protocol) -> PortProtocol:
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
            ports=tuple(parse_port(p, Protocol.ANY) for p in pr.get("ports") or ()),
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
        cidr=tuple(parse_net(c) for c in raw.get(f"{d}CIDR") or ()),
        cidr_set=tuple(
            CIDRRule(parse_net(c["cidr"]), tuple(parse_net(x) for x in c.get("except") or ()))
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


def metadata(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata") or {}
    assert isinstance(meta, Mapping)
    return meta


def rules_from_cilium_policy(body: Mapping[str, Any], *, cluster: str = "") -> tuple[Rule, ...]:
    """A validated CNP or CCNP as rules: ``spec`` first (index 0), then ``specs``."""
    meta = metadata(body)
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
