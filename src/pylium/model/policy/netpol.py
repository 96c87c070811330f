"""L1: a Kubernetes NetworkPolicy as the one Cilium rule the agent makes of it
(``pkg/k8s/network_policy.go``): the podSelector pinned to the namespace; ``policyTypes`` and
empty sections as default deny; peers: ``namespaceSelector`` over
``io.cilium.k8s.namespace.labels.*`` (empty: any namespace), ``podSelector`` in the policy's
namespace, ``ipBlock`` with ``except`` as a CIDR set, empty ``from``/``to`` as every peer;
ports default to TCP, port 0 and ``endPort`` as given."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pylium.model.policy.cilium import (
    merge_selectors,
    metadata,
    parse_net,
    parse_port,
    parse_selector,
    policy_labels,
    scope_cluster,
)
from pylium.model.policy.rules import (
    K8S_SOURCE,
    KNP,
    NAMESPACE_KEY,
    NAMESPACE_LABELS_PREFIX,
    POLICY_NAME_ANNOTATIONS,
    CIDRRule,
    LabelSelector,
    Operator,
    PeerRule,
    PortRule,
    Protocol,
    Requirement,
    Rule,
)


def _np_peer(raw: Mapping[str, Any], namespace: str, cluster: str) -> LabelSelector | None:
    if raw.get("namespaceSelector") is not None:
        ns = parse_selector(
            raw["namespaceSelector"], default_source=K8S_SOURCE, key_prefix=NAMESPACE_LABELS_PREFIX
        )
        if ns.is_wildcard:
            ns = LabelSelector((), (Requirement(f"k8s:{NAMESPACE_KEY}", Operator.EXISTS),))
        pods = parse_selector(raw.get("podSelector"), default_source=K8S_SOURCE)
        return scope_cluster(merge_selectors(ns, pods), cluster)
    if raw.get("podSelector") is not None:
        pods = parse_selector(raw["podSelector"], default_source=K8S_SOURCE)
        return scope_cluster(pods.with_match(f"k8s:{NAMESPACE_KEY}", namespace), cluster)
    return None


def _np_ports(ports: Iterable[Mapping[str, Any]]) -> tuple[PortRule, ...]:
    return tuple(
        PortRule(
            ports=(
                parse_port(
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
                                parse_net(block["cidr"]),
                                tuple(parse_net(x) for x in block.get("except") or ()),
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
    meta = metadata(body)
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
