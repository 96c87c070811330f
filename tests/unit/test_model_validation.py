"""Resource validation: what upstream's CRD schemas and rule checks refuse, with field paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pylium.base.errors import ValidationError
from pylium.model import codec, crds, registry

ROOT = Path(__file__).resolve().parents[2]


def cnp(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"endpointSelector": {"matchLabels": {"app": "backend"}}}
    base.update(spec)
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": base,
    }


def ports(*values: str, protocol: str = "TCP") -> dict[str, Any]:
    return {"toPorts": [{"ports": [{"port": v, "protocol": protocol} for v in values]}]}


def problems(body: dict[str, Any]) -> list[str]:
    try:
        codec.validate(body, source="f.yaml", document=1)
    except ValidationError as err:
        return err.render().splitlines()
    return []


def test_port_65536_refused_with_path_and_range() -> None:
    lines = problems(cnp(ingress=[ports("65536")]))
    assert len(lines) == 1
    assert lines[0].startswith("f.yaml: document 1: spec.ingress[0].toPorts[0].ports[0].port: ")
    assert "0-65535" in lines[0]


@given(st.integers(min_value=-5, max_value=70000))
def test_numeric_ports_accepted_iff_in_range(port: int) -> None:
    accepted = not problems(cnp(ingress=[ports(str(port))]))
    assert accepted == (0 <= port <= 65535)


def test_named_ports_and_ranges_accepted() -> None:
    body = cnp(ingress=[ports("http", "8080")])
    body["spec"]["ingress"][0]["toPorts"][0]["ports"][1]["endPort"] = 8090
    assert problems(body) == []


def test_cnp_with_node_selector_refused_but_ccnp_allowed() -> None:
    body = cnp(ingress=[{"fromEntities": ["cluster"]}])
    del body["spec"]["endpointSelector"]
    body["spec"]["nodeSelector"] = {"matchLabels": {"kubernetes.io/hostname": "n1"}}
    lines = problems(body)
    assert any("spec.nodeSelector" in line and "NodeSelector" in line for line in lines)
    body["kind"] = "CiliumClusterwideNetworkPolicy"
    del body["metadata"]["namespace"]
    assert problems(body) == []


def test_more_than_40_ports_refused() -> None:
    ok = cnp(ingress=[ports(*[str(1000 + i) for i in range(40)])])
    assert problems(ok) == []
    too_many = cnp(ingress=[ports(*[str(1000 + i) for i in range(41)])])
    lines = problems(too_many)
    assert any("spec.ingress[0].toPorts[0].ports" in line and "40" in line for line in lines)


def test_unknown_field_named_with_path() -> None:
    lines = problems(cnp(ingress=[{"fromEndpoint": [{}]}]))
    assert lines == [
        'f.yaml: document 1: spec.ingress[0].fromEndpoint: unknown field "fromEndpoint"'
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (cnp(ingress=[{"fromEntities": ["wrld"]}]), "spec.ingress[0].fromEntities[0]"),
        (cnp(ingress=[ports("80", protocol="TPC")]), "protocol"),
        (
            cnp(ingress=[{"fromCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}]}]),
            "except[0]",
        ),
        (cnp(ingress=[{"fromCIDR": ["10.0.0.300/8"]}]), "fromCIDR[0]"),
        (cnp(ingress=[{"icmps": [{"fields": [{"type": 8}]}], **ports("80")}]), "icmps"),
        (
            cnp(
                ingress=[
                    {
                        "toPorts": [
                            {
                                "ports": [{"port": "80", "protocol": "UDP"}],
                                "rules": {"http": [{"method": "GET"}]},
                            }
                        ]
                    }
                ]
            ),
            "L7 rules can only apply to TCP",
        ),
        (
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNetworkPolicy",
                "metadata": {"name": "p"},
            },
            "spec",
        ),
        (
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNetworkPolicy",
                "metadata": {"name": "Bad_Name"},
                "spec": {"endpointSelector": {}},
            },
            "metadata.name",
        ),
        (
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNode",
                "metadata": {"name": "n1", "namespace": "x"},
            },
            "cluster-scoped",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 80}, {"port": 81}]},
            },
            "spec.ports[0].name",
        ),
        (
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "np"},
                "spec": {"podSelector": {}, "policyTypes": ["Inbound"]},
            },
            "spec.policyTypes[0]",
        ),
        (
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "np"},
                "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
            },
            "endPort",
        ),
        (
            {
                "apiVersion": "cilium.io/v2alpha1",
                "kind": "CiliumPodIPPool",
                "metadata": {"name": "pool"},
                "spec": {"ipv4": {"cidrs": ["10.10.0.0/16"], "maskSize": 8}},
            },
            "spec.ipv4.maskSize",
        ),
        (
            {"apiVersion": "cilium.io/v1", "kind": "CiliumNode", "metadata": {"name": "n"}},
            "apiVersion",
        ),
    ],
)
def test_invalid_documents(body: dict[str, Any], fragment: str) -> None:
    lines = problems(body)
    assert lines, "expected a problem"
    assert any(fragment in line for line in lines), lines


GOOD = """\
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-fw}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: n1}}
  ingress:
  - fromEntities: [cluster]
  ingressDeny:
  - fromCIDRSet: [{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchExpressions: [{key: app, operator: In, values: [api]}]}
    - ipBlock: {cidr: 172.16.0.0/12, except: [172.16.1.0/24]}
    ports: [{protocol: TCP, port: 5432}, {port: 8000, endPort: 8080}]
---
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: n1}
spec:
  addresses: [{type: InternalIP, ip: 192.168.1.11}]
  ipam: {podCIDRs: [10.0.1.0/24]}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumPodIPPool
metadata: {name: default}
spec:
  ipv4: {cidrs: [10.20.0.0/16], maskSize: 27}
---
apiVersion: v1
kind: Service
metadata: {name: web, annotations: {service.cilium.io/type: LoadBalancer}}
spec:
  type: LoadBalancer
  selector: {app: web}
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
"""


def test_good_documents_validate_and_get_defaults() -> None:
    resources = codec.parse_documents(GOOD, "good.yaml")
    assert [r.kind for r in resources] == [
        "CiliumClusterwideNetworkPolicy",
        "NetworkPolicy",
        "CiliumNode",
        "CiliumPodIPPool",
        "Service",
        "Pod",
    ]
    assert resources[4].namespace == "default"  # filled in like kubectl does
    assert resources[2].namespace == ""


def test_errors_across_documents_name_each_document() -> None:
    text = GOOD + "---\n" + yaml.safe_dump(cnp(ingress=[ports("70000")]))
    text += "---\nkind: Frobnicator\napiVersion: v1\nmetadata: {name: x}\n"
    with pytest.raises(ValidationError) as err:
        codec.parse_documents(text, "all.yaml")
    lines = err.value.render().splitlines()
    assert lines[0].startswith("all.yaml: document 7: spec.ingress[0].toPorts[0].ports[0].port")
    assert lines[1].startswith("all.yaml: document 8: kind: ")


def test_malformed_yaml_names_line() -> None:
    with pytest.raises(ValidationError) as err:
        codec.parse_documents("a: [1,\nb: c\n", "bad.yaml")
    assert "bad.yaml" in str(err.value) and "line" in str(err.value)


def test_kind_lookup_by_short_names_and_suggestions() -> None:
    assert registry.lookup_kind("cnp").kind == "CiliumNetworkPolicy"
    assert registry.lookup_kind("CCNP").kind == "CiliumClusterwideNetworkPolicy"
    assert registry.lookup_kind("cn").kind == "CiliumNode"
    assert registry.lookup_kind("ciliumpodippools").kind == "CiliumPodIPPool"
    assert registry.lookup_kind("netpol").kind == "NetworkPolicy"
    with pytest.raises(ValidationError, match='did you mean "ciliumnode"'):
        registry.lookup_kind("ciliumnod")


def test_committed_crds_match_the_schemas() -> None:
    rendered = crds.render_all()
    committed = {p.name: p.read_text() for p in (ROOT / "deploy" / "crds").glob("*.yaml")}
    assert committed == rendered, "run `make crds` and commit deploy/crds"
    for text in rendered.values():
        doc = yaml.safe_load(text)
        assert doc["kind"] == "CustomResourceDefinition"
        schema = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        assert "&id" not in text


def test_selector_keys_may_name_a_label_source() -> None:
    body = cnp(
        ingress=[
            {
                "fromEndpoints": [
                    {
                        "matchLabels": {
                            "k8s:io.kubernetes.pod.namespace": "prod",
                            "reserved:host": "",
                            "any:app": "web",
                        }
                    }
                ]
            }
        ]
    )
    assert problems(body) == []
    bad = cnp(ingress=[{"fromEndpoints": [{"matchLabels": {"k8s:bad key": "x"}}]}])
    assert any("matchLabels.k8s:bad key" in line for line in problems(bad))
