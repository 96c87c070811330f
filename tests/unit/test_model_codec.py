"""Parsing documents into validated resources: realistic good examples, errors that name the
file, the document (from 1) and the field, kind names, JSON, and dumping back."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pylium.base.errors import Location, ValidationError
from pylium.model import codec, registry

GOOD = """\
# L4: frontend may reach backend on 80/TCP
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: frontend-to-backend
  namespace: shop
spec:
  endpointSelector:
    matchLabels: {app: backend}
  ingress:
  - fromEndpoints:
    - matchLabels: {app: frontend}
    toPorts:
    - ports:
      - {port: "80", protocol: TCP}
      rules:
        http:
        - {method: GET, path: "/api/.*"}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: host-ssh-from-cluster
spec:
  description: only the cluster may ssh into workers
  nodeSelector:
    matchLabels: {node-role.kubernetes.io/worker: ""}
  ingress:
  - fromEntities: [cluster]
    toPorts:
    - ports: [{port: "22", protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-partners, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except: [172.17.1.0/24]
    ports:
    - {protocol: TCP, port: 443}
---
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: worker-1}
spec:
  addresses:
  - {type: InternalIP, ip: 192.168.10.11}
  ipam:
    podCIDRs: [10.0.1.0/24]
---
apiVersion: cilium.io/v2alpha1
kind: CiliumPodIPPool
metadata: {name: mars}
spec:
  ipv4:
    cidrs: [10.20.0.0/16]
    maskSize: 27
  ipv6:
    cidrs: ["fd00:20::/104"]
    maskSize: 120
  podSelector:
    matchExpressions:
    - {key: tier, operator: In, values: [batch]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns-egress, namespace: shop}
specs:
- endpointSelector: {}
  egress:
  - toEndpoints:
    - matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.example.com"}]
  - toFQDNs: [{matchName: api.example.com}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""


def test_upstream_style_examples_validate() -> None:
    resources = codec.parse_documents(GOOD, "good.yaml")
    assert [(r.kind, r.namespace, r.name) for r in resources] == [
        ("CiliumNetworkPolicy", "shop", "frontend-to-backend"),
        ("CiliumClusterwideNetworkPolicy", "", "host-ssh-from-cluster"),
        ("NetworkPolicy", "shop", "allow-partners"),
        ("CiliumNode", "", "worker-1"),
        ("CiliumPodIPPool", "", "mars"),
        ("CiliumNetworkPolicy", "shop", "dns-egress"),
    ]


def cnp_port(port: str) -> dict[str, Any]:
    return {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "bad-cnp"},
        "spec": {
            "endpointSelector": {},
            "ingress": [{"toPorts": [{"ports": [{"port": port, "protocol": "TCP"}]}]}],
        },
    }


def test_seed_port_65536_is_refused_like_the_api_server() -> None:
    with pytest.raises(ValidationError) as err:
        codec.parse_documents(yaml.safe_dump(cnp_port("65536")), "bad-cnp.yaml")
    ((loc, message),) = err.value.problems
    assert loc == Location(
        source="bad-cnp.yaml",
        document=1,
        path=("spec", "ingress", 0, "toPorts", 0, "ports", 0, "port"),
    )
    assert message == 'Invalid value: "65536": must be in the range 0-65535'
    assert str(err.value) == (
        "bad-cnp.yaml: document 1: spec.ingress[0].toPorts[0].ports[0].port: "
        'Invalid value: "65536": must be in the range 0-65535'
    )


@given(st.one_of(st.integers(-100_000, 200_000), st.integers()))
def test_cnp_numeric_port_accepted_iff_in_range(port: int) -> None:
    try:
        codec.validate(cnp_port(str(port)))
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (0 <= port <= 65535)


@given(st.integers(-70_000, 140_000))
def test_network_policy_port_accepted_iff_in_range(port: int) -> None:
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "np"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": port}]}]},
    }
    try:
        codec.validate(body)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (1 <= port <= 65535)


def test_named_and_malformed_ports() -> None:
    codec.validate(cnp_port("http-alt"))
    with pytest.raises(ValidationError, match="or a port name"):
        codec.validate(cnp_port("http_alt"))


def test_every_problem_of_every_document_names_its_document() -> None:
    unknown_field = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}], "selectr": {"app": "web"}},
    }
    text = "\n---\n".join(
        [
            GOOD.split("---\n")[0],  # document 1: fine
            "",  # document 2: empty, skipped but counted
            yaml.safe_dump(cnp_port("70000")),  # document 3
            yaml.safe_dump(unknown_field),  # document 4
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolcy\nmetadata: {name: x}\n",  # 5
            "apiVersion: cilium.io/v1\nkind: CiliumNode\nmetadata: {name: x}\n",  # 6
            "- just\n- a list\n",  # 7
        ]
    )
    with pytest.raises(ValidationError) as err:
        codec.parse_documents(text, "all.yaml")
    by_doc = {loc.document: (loc, msg) for loc, msg in err.value.problems}
    assert sorted(by_doc) == [3, 4, 5, 6, 7]
    assert all(loc.source == "all.yaml" for loc, _ in err.value.problems)
    assert by_doc[3][0].path[-1] == "port"
    assert by_doc[4] == (
        Location("all.yaml", 4, ("spec", "selectr")),
        'unknown field "selectr"',
    )
    assert by_doc[5][1] == (
        'Unsupported value: unknown kind "CiliumNetworkPolcy" (did you mean "CiliumNetworkPolicy"?)'
    )
    assert by_doc[6][0].path == ("apiVersion",) and '"cilium.io/v2"' in by_doc[6][1]
    assert "must be an object" in by_doc[7][1]


def test_malformed_yaml_names_line_and_column() -> None:
    with pytest.raises(ValidationError) as err:
        codec.parse_documents("kind: Pod\nmetadata: {name: [x\n", "broken.yaml")
    ((loc, message),) = err.value.problems
    assert loc.source == "broken.yaml"
    assert message.startswith("malformed YAML: line 3, column 1: ")


def test_json_documents_and_list_kind() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad"}},
        ],
    }
    with pytest.raises(ValidationError) as err:
        codec.parse_documents(json.dumps(doc, indent=2), "list.json")
    problems = [(str(loc), msg.split(":")[0]) for loc, msg in err.value.problems]
    assert ("list.json: document 1: metadata.name", "Invalid value") in problems
    assert ("list.json: document 1: spec", "Required value") in problems


def test_defaults_scope_and_no_mutation() -> None:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}
    res = codec.validate(body)
    assert res.namespace == "default" and "namespace" not in body["metadata"]
    with pytest.raises(ValidationError, match="cluster-scoped"):
        codec.validate(
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumIdentity",
                "metadata": {"name": "1", "namespace": "x"},
            }
        )


def test_dump_round_trips() -> None:
    resources = codec.parse_documents(GOOD, "good.yaml")
    for res in resources:
        for fmt in ("yaml", "json"):
            (again,) = codec.parse_documents(codec.dump(res, fmt), f"again.{fmt}")
            assert again.body == res.body
    assert codec.dump(resources[0]).startswith(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy"
    )
    with pytest.raises(ValidationError, match="unknown output format"):
        codec.dump(resources[0], "toml")


def test_every_name_of_every_kind_is_found() -> None:
    for info in registry.KINDS:
        for name in (info.kind, info.plural, info.singular, *info.short_names):
            for text in (name, name.upper(), f"{name}.{info.group}"):
                assert registry.lookup_kind(text) is info
    assert registry.lookup_kind("ciliumid").kind == "CiliumIdentity"
    assert registry.lookup_kind("cpip").api_version == "cilium.io/v2alpha1"
    assert registry.lookup_kind("endpointslices").api_version == "discovery.k8s.io/v1"
    with pytest.raises(
        ValidationError,
        match='unknown kind "CiliumNetworkPolcy" '
        r'\(did you mean "CiliumNetworkPolicy"\?\)',
    ):
        registry.lookup_kind("CiliumNetworkPolcy")
    with pytest.raises(ValidationError, match=r'unknown kind "frobnicator"$'):
        registry.lookup_kind("frobnicator")
