"""Semantic checks beyond the schema: upstream's rule sanitizer for CNP/CCNP and the API
server's rules for the built-in kinds; every refusal names its field path."""

from __future__ import annotations

from typing import Any

import pytest

from pylium.base.errors import ValidationError
from pylium.model import codec


def cnp(rule: dict[str, Any], *, kind: str = "CiliumNetworkPolicy") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if kind == "CiliumNetworkPolicy":
        meta["namespace"] = "default"
    if "nodeSelector" not in rule:
        rule = {"endpointSelector": {"matchLabels": {"app": "backend"}}, **rule}
    return {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": rule}


def problems(body: dict[str, Any]) -> list[str]:
    """Each problem as ``path: message`` (no source or document)."""
    try:
        codec.validate(body)
    except ValidationError as err:
        return err.render().splitlines()
    return []


def http(protocol: str | None, port: str = "80") -> dict[str, Any]:
    entry: dict[str, Any] = {"port": port}
    if protocol is not None:
        entry["protocol"] = protocol
    return {"ports": [entry], "rules": {"http": [{"method": "GET", "path": "/"}]}}


def test_http_rules_need_explicit_tcp() -> None:
    assert problems(cnp({"ingress": [{"toPorts": [http("TCP")]}]})) == []
    for protocol in (None, "ANY", "UDP"):
        lines = problems(cnp({"ingress": [{"toPorts": [http(protocol)]}]}))
        assert len(lines) == 1
        assert lines[0].startswith("spec.ingress[0].toPorts[0].ports[0].protocol: ")
        assert f"L7 rules can only apply to TCP (not {protocol or 'ANY'})" in lines[0]


def test_l7_never_on_port_zero() -> None:
    (line,) = problems(cnp({"ingress": [{"toPorts": [http("TCP", port="0")]}]}))
    assert line.startswith("spec.ingress[0].toPorts[0].ports[0].port: ")
    assert "port is 0" in line


def dns(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"ports": ports, "rules": {"dns": [{"matchPattern": "*"}]}}


def test_dns_rules_egress_only_with_ports_and_no_ranges() -> None:
    good = {"toEndpoints": [{}], "toPorts": [dns([{"port": "53", "protocol": "ANY"}])]}
    assert problems(cnp({"egress": [good]})) == []
    (line,) = problems(cnp({"ingress": [{"toPorts": [dns([{"port": "53"}])]}]}))
    assert line.startswith("spec.ingress[0].toPorts[0].rules.dns: Forbidden: DNS rules")
    (line,) = problems(cnp({"egress": [{"toPorts": [dns([])]}]}))
    assert line == (
        "spec.egress[0].toPorts[0].ports: Required value: Port 53 must be specified for DNS rules"
    )
    (line,) = problems(cnp({"egress": [{"toPorts": [dns([{"port": "53", "endPort": 60}])]}]}))
    assert line.startswith("spec.egress[0].toPorts[0].ports[0].endPort: ")
    assert "port ranges" in line


def test_one_l3_peer_kind_per_rule() -> None:
    (line,) = problems(
        cnp({"egress": [{"toEndpoints": [{}], "toEntities": ["world"], "toFQDNs": []}]})
    )
    assert line == (
        "spec.egress[0].toEntities: Invalid value: "
        "Combining ToEndpoints and ToEntities is not supported yet"
    )
    # CIDR lists and CIDR sets in one rule are accepted (a documented deviation).
    both = {"fromCIDR": ["10.0.0.0/8"], "fromCIDRSet": [{"cidr": "192.168.0.0/16"}]}
    assert problems(cnp({"ingress": [both]})) == []
    # Deny sections are not sanitized this way upstream.
    deny = {"fromEndpoints": [{}], "fromEntities": ["world"]}
    assert problems(cnp({"ingressDeny": [deny]})) == []


def test_to_services_not_with_to_ports() -> None:
    rule = {
        "toServices": [{"k8sService": {"serviceName": "db", "namespace": "default"}}],
        "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}],
    }
    (line,) = problems(cnp({"egress": [rule]}))
    assert line.startswith("spec.egress[0].toPorts: ") and "ToServices and ToPorts" in line


def test_host_policies_have_no_l7() -> None:
    body = cnp(
        {"nodeSelector": {}, "ingress": [{"toPorts": [http("TCP")]}]},
        kind="CiliumClusterwideNetworkPolicy",
    )
    (line,) = problems(body)
    assert line.startswith("spec.ingress[0].toPorts[0].rules: Forbidden: host policies")


def test_selectors_exactly_one_and_sections_at_least_one() -> None:
    both = cnp({"nodeSelector": {}, "endpointSelector": {}, "ingress": [{}]})
    both["kind"] = "CiliumClusterwideNetworkPolicy"
    del both["metadata"]["namespace"]
    (line,) = problems(both)
    assert line == (
        "spec: Invalid value: may specify only one of: endpointSelector, nodeSelector "
        "(found endpointSelector, nodeSelector)"
    )
    neither = cnp({"ingress": [{}]})
    del neither["spec"]["endpointSelector"]
    assert problems(neither) == [
        "spec: Required value: must specify exactly one of: endpointSelector, nodeSelector"
    ]
    assert problems(cnp({})) == [
        "spec: Required value: must specify at least one of: "
        "ingress, ingressDeny, egress, egressDeny"
    ]


def test_specs_list_checked_rule_by_rule() -> None:
    body = cnp({"ingress": [{}]})
    rule = body.pop("spec")
    body["specs"] = [rule, {**rule, "ingress": [{"toPorts": [{"ports": [{"port": "99999"}]}]}]}]
    (line,) = problems(body)
    assert line.startswith("specs[1].ingress[0].toPorts[0].ports[0].port: ")


def test_port_must_be_given() -> None:
    (line,) = problems(cnp({"ingress": [{"toPorts": [{"ports": [{"protocol": "UDP"}]}]}]}))
    assert (
        line == "spec.ingress[0].toPorts[0].ports[0].port: Required value: Port must be specified"
    )


def test_icmp_types_by_number_or_family_name() -> None:
    def icmp(*fields: dict[str, Any]) -> dict[str, Any]:
        return cnp({"ingress": [{"icmps": [{"fields": list(fields)}]}]})

    assert (
        problems(icmp({"type": 8}, {"type": "EchoRequest"}, {"family": "IPv6", "type": 128})) == []
    )
    (line,) = problems(icmp({"type": 256}))
    assert line.startswith("spec.ingress[0].icmps[0].fields[0].type: ") and "0-255" in line
    (line,) = problems(icmp({"type": "Ping"}))
    assert line.startswith("spec.ingress[0].icmps[0].fields[0].type: ")
    (line,) = problems(icmp({"family": "IPv6", "type": "Echo"}))
    assert "not an IPv6 ICMP type name" in line
    (line,) = problems(icmp({"family": "IPv5", "type": 8}))
    assert line.startswith('spec.ingress[0].icmps[0].fields[0].family: Unsupported value: "IPv5"')


def test_icmp_protocol_is_not_a_port_protocol() -> None:
    (line,) = problems(
        cnp({"ingress": [{"toPorts": [{"ports": [{"port": "0", "protocol": "ICMP"}]}]}]})
    )
    assert line.startswith(
        'spec.ingress[0].toPorts[0].ports[0].protocol: Unsupported value: "ICMP"'
    )


def test_cidr_rule_needs_exactly_one_source_and_except_inside() -> None:
    lines = problems(cnp({"egress": [{"toCIDRSet": [{"except": ["10.0.0.0/8"]}]}]}))
    assert lines == [
        "spec.egress[0].toCIDRSet[0]: Required value: must specify exactly one of: "
        "cidr, cidrGroupRef, cidrGroupSelector"
    ]
    (line,) = problems(
        cnp({"egress": [{"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}]}]})
    )
    assert line.startswith("spec.egress[0].toCIDRSet[0].except[0]: ") and "10.0.0.0/8" in line


def test_authentication_mode_required() -> None:
    (line,) = problems(cnp({"ingress": [{"fromEndpoints": [{}], "authentication": {}}]}))
    assert line == "spec.ingress[0].authentication.mode: Required value"


def test_end_port_below_port_is_one_port_in_cilium_policies() -> None:
    # Upstream treats endPort <= port as the single port (pkg/policy/l4.go keysForRange).
    rule = {"toPorts": [{"ports": [{"port": "8080", "endPort": 80, "protocol": "TCP"}]}]}
    assert problems(cnp({"ingress": [rule]})) == []


def svc(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"ports": [{"port": 0}]}, 'spec.ports[0].port: Invalid value: "0"'),
        ({"ports": [{"port": 65536}]}, 'spec.ports[0].port: Invalid value: "65536"'),
        ({"type": "Headless", "ports": [{"port": 80}]}, 'spec.type: Unsupported value: "Headless"'),
        ({"clusterIP": "10.96.0.300"}, 'spec.clusterIP: Invalid value: "10.96.0.300"'),
        ({"type": "NodePort", "clusterIP": "None"}, 'spec.clusterIP: Invalid value: "None"'),
        ({"type": "ExternalName"}, "spec.externalName: Required value"),
        ({"externalTrafficPolicy": "Local"}, "spec.externalTrafficPolicy: Invalid value"),
        ({"externalTrafficPolicy": "Global"}, "spec.externalTrafficPolicy: Unsupported value"),
        ({"internalTrafficPolicy": "Node"}, "spec.internalTrafficPolicy: Unsupported value"),
        ({"sessionAffinity": "Cookie"}, 'spec.sessionAffinity: Unsupported value: "Cookie"'),
        (
            {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
            "spec.sessionAffinityConfig: Invalid value",
        ),
        ({"ports": [{"port": 80, "targetPort": 70000}]}, "spec.ports[0].targetPort: Invalid value"),
        ({"ports": [{"port": 80, "targetPort": "Web_Port"}]}, "spec.ports[0].targetPort: Invalid"),
        ({"ports": [{"port": 80, "nodePort": 30080}]}, "spec.ports[0].nodePort: Forbidden"),
        (
            {
                "type": "NodePort",
                "ports": [
                    {"name": "a", "port": 80, "nodePort": 30080},
                    {"name": "b", "port": 81, "nodePort": 30080},
                ],
            },
            'spec.ports[1].nodePort: Duplicate value: "30080"',
        ),
        ({"ports": [{"name": "Http", "port": 80}]}, 'spec.ports[0].name: Invalid value: "Http"'),
    ],
)
def test_service_refusals(spec: dict[str, Any], expected: str) -> None:
    lines = problems(svc(spec))
    assert any(line.startswith(expected) for line in lines), lines


def test_service_good_shapes() -> None:
    for spec in (
        {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
        {"type": "ExternalName", "externalName": "db.example.com"},
        {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Local",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            "healthCheckNodePort": 32000,
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30080},
            ],
        },
    ):
        assert problems(svc(spec)) == [], spec


def netpol(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": "prod"},
        "spec": {"podSelector": {}, **spec},
    }


def test_network_policy_ip_block_and_ports() -> None:
    def ingress(peer: dict[str, Any] | None = None, port: dict[str, Any] | None = None) -> Any:
        item: dict[str, Any] = {}
        if peer is not None:
            item["from"] = [peer]
        if port is not None:
            item["ports"] = [port]
        return netpol({"ingress": [item]})

    (line,) = problems(ingress({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}))
    assert line.startswith("spec.ingress[0].from[0].ipBlock.except[0]: ") and "strict" in line
    (line,) = problems(ingress({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}))
    assert "must be within 10.0.0.0/8" in line
    (line,) = problems(ingress({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}))
    assert line.startswith("spec.ingress[0].from[0]: Forbidden")
    (line,) = problems(ingress(port={"port": 0}))
    assert line.startswith('spec.ingress[0].ports[0].port: Invalid value: "0"')
    (line,) = problems(ingress(port={"port": "http", "endPort": 90}))
    assert line.startswith("spec.ingress[0].ports[0].endPort: ")
    (line,) = problems(ingress(port={"port": 90, "endPort": 80}))
    assert line.startswith('spec.ingress[0].ports[0].endPort: Invalid value: "80"')
    assert problems(ingress(port={"protocol": "UDP", "port": 53})) == []


def test_pod_named_ports_and_namespace_names() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1"},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "ports": [
                        {"name": "http", "containerPort": 80},
                        {"name": "http", "containerPort": 81},
                        {"name": "8080", "containerPort": 8080},
                    ],
                }
            ]
        },
    }
    assert problems(pod) == [
        'spec.containers[0].ports[1].name: Duplicate value: "http"',
        'spec.containers[0].ports[2].name: Invalid value: "8080": '
        "must contain at least one letter (a-z)",
    ]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team.a"}}
    (line,) = problems(ns)
    assert line.startswith('metadata.name: Invalid value: "team.a": a Namespace name')


def test_pool_mask_size_bounded_by_family_and_prefix() -> None:
    def pool(family: str, cidr: str, mask: int) -> dict[str, Any]:
        return {
            "apiVersion": "cilium.io/v2alpha1",
            "kind": "CiliumPodIPPool",
            "metadata": {"name": "blue"},
            "spec": {family: {"cidrs": [cidr], "maskSize": mask}},
        }

    assert problems(pool("ipv4", "10.20.0.0/16", 24)) == []
    assert problems(pool("ipv6", "fd00:20::/48", 64)) == []
    (line,) = problems(pool("ipv4", "10.20.0.0/16", 64))
    assert line == 'spec.ipv4.maskSize: Invalid value: "64": must be in the range 1-32'
    (line,) = problems(pool("ipv4", "10.20.0.0/16", 8))
    assert line.startswith("spec.ipv4.maskSize: ") and "prefix length of 10.20.0.0/16" in line
    (line,) = problems(pool("ipv4", "fd00::/48", 24))
    assert line.startswith("spec.ipv4.cidrs[0]: ") and "not an ipv4 CIDR" in line
    (line,) = problems(pool("ipv4", "10.20.0.1/16", 24))
    assert line.startswith('spec.ipv4.cidrs[0]: Invalid value: "10.20.0.1/16"')


def test_metadata_names_labels_and_annotations() -> None:
    def ns(meta: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", **meta}}

    good = {
        "labels": {"app.kubernetes.io/name": "shop", "tier": ""},
        "annotations": {"ipam.cilium.io/ip-pool": "any text: allowed here"},
    }
    assert problems(ns(good)) == []
    assert problems(ns({"labels": {"bad key": "x", "ok": "-bad-"}})) == [
        'metadata.labels.bad key: Invalid value: "bad key": not a valid label key',
        'metadata.labels.ok: Invalid value: "-bad-": not a valid label value',
    ]
    assert problems(ns({"annotations": {"Cilium.IO/x": "y"}})) == [
        'metadata.annotations.Cilium.IO/x: Invalid value: "Cilium.IO/x": not a valid annotation key'
    ]
