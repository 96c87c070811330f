"""Parsing CNP, CCNP and NetworkPolicy into Cilium rules, as the agent maps them (model.policy)."""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from pylium.model import codec
from pylium.model.policy import (
    CIDRRule,
    Entity,
    LabelSelector,
    Operator,
    PeerRule,
    PolicyRef,
    PortProtocol,
    Protocol,
    Requirement,
    Rule,
    rules_from_object,
)

NS = "k8s:io.kubernetes.pod.namespace"


def rules(text: str, *, cluster: str = "", validate: bool = True) -> tuple[Rule, ...]:
    body: dict[str, Any] = yaml.safe_load(text)
    if validate:
        body = dict(codec.validate(body).body)
    return rules_from_object(body, cluster=cluster)


def cnp(spec: str, kind: str = "CiliumNetworkPolicy", ns: str = "  namespace: prod\n") -> str:
    return f"apiVersion: cilium.io/v2\nkind: {kind}\nmetadata:\n  name: p\n{ns}spec:\n{spec}"


def test_cnp_endpoint_selector_is_pinned_to_the_namespace() -> None:
    (rule,) = rules(
        cnp(
            "  endpointSelector:\n"
            "    matchLabels: {app: web, k8s:io.kubernetes.pod.namespace: other}\n"
            "  ingress: [{}]\n"
        ),
        validate=False,  # model.checks refuses source-prefixed keys, which Cilium accepts
    )
    assert rule.endpoint_selector == LabelSelector((("any:app", "web"), (NS, "prod")))


def test_cnp_peers_are_scoped_unless_they_name_a_namespace() -> None:
    (rule,) = rules(
        cnp(
            "  endpointSelector: {}\n"
            "  ingress:\n"
            "  - fromEndpoints:\n"
            "    - {}\n"
            "    - matchLabels: {app: db}\n"
            "    - matchLabels: {io.kubernetes.pod.namespace: kube-system}\n"
            "    - matchLabels: {io.cilium.k8s.namespace.labels.team: a}\n"
            "    - matchLabels: {reserved:host: ''}\n"
        ),
        validate=False,
    )
    assert rule.ingress[0].endpoints == (
        LabelSelector(((NS, "prod"),)),
        LabelSelector((("any:app", "db"), (NS, "prod"))),
        LabelSelector((("any:io.kubernetes.pod.namespace", "kube-system"),)),
        LabelSelector((("any:io.cilium.k8s.namespace.labels.team", "a"),)),
        LabelSelector((("reserved:host", ""),)),
    )


def test_ccnp_peers_require_a_namespace_label_and_cluster_scoping_is_optional() -> None:
    (rule,) = rules(
        cnp(
            "  endpointSelector: {}\n  egress:\n  - toEndpoints: [{matchLabels: {app: db}}]\n",
            kind="CiliumClusterwideNetworkPolicy",
            ns="",
        ),
        cluster="c1",
    )
    assert rule.endpoint_selector == LabelSelector()
    assert rule.egress[0].endpoints == (
        LabelSelector(
            (("any:app", "db"), ("k8s:io.cilium.k8s.policy.cluster", "c1")),
            (Requirement(NS, Operator.EXISTS),),
        ),
    )
    assert rule.ref == PolicyRef("CiliumClusterwideNetworkPolicy", "", "p", 0)


def test_cnp_spec_and_specs_and_derived_labels() -> None:
    text = cnp(
        "  endpointSelector: {}\n  ingress: [{}]\n"
        "specs:\n"
        "- endpointSelector: {}\n  egressDeny: [{toEntities: [world]}]\n"
        "  enableDefaultDeny: {egress: false}\n"
        "  labels: [{key: team, value: a}]\n"
        "  description: second\n"
    ).replace("metadata:\n  name: p\n", "metadata:\n  name: p\n  uid: u-1\n")
    first, second = rules(text)
    assert first.ref == PolicyRef("CiliumNetworkPolicy", "prod", "p", 0)
    assert str(second.ref) == "CiliumNetworkPolicy prod/p[1]"
    assert second.labels == (
        "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
        "k8s:io.cilium.k8s.policy.name=p",
        "k8s:io.cilium.k8s.policy.namespace=prod",
        "k8s:io.cilium.k8s.policy.uid=u-1",
        "unspec:team=a",
    )
    assert second.egress_deny[0].entities == (Entity.WORLD,)
    assert second.enable_default_deny.egress is False
    assert second.enable_default_deny.ingress is None
    assert second.description == "second"


def test_ports_cidrs_icmps_and_node_selector() -> None:
    (rule,) = rules(
        cnp(
            "  nodeSelector: {matchLabels: {role: worker}}\n"
            "  ingress:\n"
            "  - fromCIDR: [10.0.0.0/8]\n"
            "    fromCIDRSet: [{cidr: 192.168.0.0/16, except: [192.168.1.0/24]}]\n"
            "    toPorts:\n"
            "    - ports:\n"
            "      - {port: '80', protocol: TCP}\n"
            "      - {port: '8080', endPort: 8090}\n"
            "      - {port: http}\n"
            "  - icmps: [{fields: [{type: 8}, {family: IPv6, type: EchoRequest}]}]\n",
            kind="CiliumClusterwideNetworkPolicy",
            ns="",
        )
    )
    assert rule.endpoint_selector is None
    assert rule.node_selector == LabelSelector((("any:role", "worker"),))
    first, second = rule.ingress
    assert first.cidr == (ipaddress.ip_network("10.0.0.0/8"),)
    assert first.cidr_set == (
        CIDRRule(ipaddress.ip_network("192.168.0.0/16"), (ipaddress.ip_network("192.168.1.0/24"),)),
    )
    assert first.to_ports[0].ports == (
        PortProtocol(port=80, protocol=Protocol.TCP),
        PortProtocol(port=8080, end_port=8090, protocol=Protocol.ANY),
        PortProtocol(name="http", protocol=Protocol.ANY),
    )
    assert [(f.family, f.type) for f in second.icmps] == [("IPv4", 8), ("IPv6", 128)]
    assert not second.has_peers


NP_HEAD = (
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
    "metadata:\n  name: np\n  namespace: prod\n"
)


def np(spec: str, meta: str = "") -> Rule:
    (rule,) = rules(NP_HEAD + meta + "spec:\n" + spec)
    return rule


def test_np_empty_pod_selector_and_legacy_ingress_default_deny() -> None:
    rule = np("  podSelector: {}\n")
    assert rule.endpoint_selector == LabelSelector(((NS, "prod"),))
    assert rule.ingress == (PeerRule(),)
    assert rule.egress == ()
    assert rule.labels[0] == "k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"


def test_np_policy_types() -> None:
    egress_only = np("  podSelector: {}\n  policyTypes: [Egress]\n")
    assert egress_only.ingress == () and egress_only.egress == (PeerRule(),)
    both = np("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n")
    assert both.ingress == (PeerRule(),) and both.egress == (PeerRule(),)


def test_np_empty_from_allows_every_peer_on_the_ports() -> None:
    rule = np(
        "  podSelector: {matchLabels: {app: web}}\n"
        "  ingress:\n  - ports: [{port: 80, endPort: 90}]\n"
    )
    assert rule.endpoint_selector == LabelSelector((("k8s:app", "web"), (NS, "prod")))
    (section,) = rule.ingress
    assert section.endpoints == (LabelSelector(),)
    assert section.to_ports[0].ports == (PortProtocol(port=80, end_port=90, protocol=Protocol.TCP),)


def test_np_peers_namespace_selector_pod_selector_and_ip_block() -> None:
    rule = np(
        "  podSelector: {}\n"
        "  ingress:\n"
        "  - from:\n"
        "    - namespaceSelector: {matchLabels: {team: a}}\n"
        "      podSelector: {matchLabels: {app: client}}\n"
        "    - namespaceSelector: {}\n"
        "    - podSelector: {}\n"
        "    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n"
        "    ports: [{protocol: UDP, port: 53}, {port: dns}]\n"
    )
    assert [s.endpoints for s in rule.ingress] == [
        (LabelSelector((("k8s:app", "client"), ("k8s:io.cilium.k8s.namespace.labels.team", "a"))),),
        (LabelSelector((), (Requirement(NS, Operator.EXISTS),)),),
        (LabelSelector(((NS, "prod"),)),),
        (),
    ]
    assert rule.ingress[3].cidr_set == (
        CIDRRule(ipaddress.ip_network("10.0.0.0/8"), (ipaddress.ip_network("10.1.0.0/16"),)),
    )
    assert rule.ingress[0].to_ports[1].ports == (PortProtocol(name="dns", protocol=Protocol.TCP),)
    assert rule.ingress[0].to_ports[0].ports == (PortProtocol(port=53, protocol=Protocol.UDP),)


def test_np_name_annotation_overrides_the_name() -> None:
    rule = np("  podSelector: {}\n", meta="  annotations: {policy.cilium.io/name: nicer}\n")
    assert rule.ref == PolicyRef("NetworkPolicy", "prod", "nicer", 0)


def test_other_kinds_have_no_rules() -> None:
    assert rules_from_object({"kind": "Service"}) == ()
