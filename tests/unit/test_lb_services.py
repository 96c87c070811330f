"""Frontends, backend states and the traffic-policy matrix of the lb core."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.base.errors import ValidationError
from pylium.core.lb.addr import BackendState, Scope, ServiceName, SVCType, parse_ip
from pylium.core.lb.k8s import Endpoint, parse_endpoint_slice, parse_service
from pylium.core.lb.services import (
    Backend,
    backends,
    endpoint_state,
    frontends,
    hostport_frontends,
    node_exposes,
    select,
)

NODE = "node-a"
NODE_IPS = (ipaddress.ip_address("192.168.1.10"), ipaddress.ip_address("192.168.1.11"))


def svc(**spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    status = spec.pop("status", {})
    base = {"clusterIP": "10.96.1.1", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}
    return {
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
        "spec": {**base, **spec},
        "status": status,
    }


def eps(*endpoints: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-abc",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
            "annotations": annotations or {},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


def ep(ip: str, node: str = NODE, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "nodeName": node, "conditions": conditions}


def fe_strings(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (str(f.address), f.type.value)
        for f in frontends(parse_service(doc), node_addresses=NODE_IPS)
    ]


def test_clusterip_frontends() -> None:
    assert fe_strings(svc()) == [("10.96.1.1:80/TCP", "ClusterIP")]


def test_nodeport_on_surrogate_and_every_node_address() -> None:
    assert fe_strings(svc(type="NodePort")) == [
        ("10.96.1.1:80/TCP", "ClusterIP"),
        ("0.0.0.0:30080/TCP", "NodePort"),
        ("192.168.1.10:30080/TCP", "NodePort"),
        ("192.168.1.11:30080/TCP", "NodePort"),
    ]
    without_kpr = frontends(parse_service(svc(type="NodePort")), kube_proxy_replacement=False)
    assert [f.type for f in without_kpr] == [SVCType.CLUSTER_IP]


def test_loadbalancer_also_creates_clusterip_and_nodeport() -> None:
    status = {"loadBalancer": {"ingress": [{"ip": "172.18.0.100"}, {"hostname": "lb.example"}]}}
    got = fe_strings(svc(type="LoadBalancer", status=status))
    assert ("10.96.1.1:80/TCP", "ClusterIP") in got
    assert ("0.0.0.0:30080/TCP", "NodePort") in got
    assert ("172.18.0.100:80/TCP", "LoadBalancer") in got
    assert len(got) == 5


def test_loadbalancer_without_node_ports() -> None:
    status = {"loadBalancer": {"ingress": [{"ip": "172.18.0.100"}]}}
    doc = svc(
        type="LoadBalancer",
        allocateLoadBalancerNodePorts=False,
        ports=[{"port": 80}],
        status=status,
    )
    assert fe_strings(doc) == [
        ("10.96.1.1:80/TCP", "ClusterIP"),
        ("172.18.0.100:80/TCP", "LoadBalancer"),
    ]


def test_ipmode_proxy_ingress_is_not_a_vip() -> None:
    status = {"loadBalancer": {"ingress": [{"ip": "172.18.0.100", "ipMode": "Proxy"}]}}
    assert all(t != "LoadBalancer" for _, t in fe_strings(svc(type="LoadBalancer", status=status)))


def test_external_ips_and_headless() -> None:
    assert ("203.0.113.7:80/TCP", "ExternalIPs") in fe_strings(svc(externalIPs=["203.0.113.7"]))
    assert fe_strings(svc(clusterIP="None")) == []
    headless = svc()
    headless["metadata"]["labels"] = {"service.kubernetes.io/headless": ""}
    assert fe_strings(headless) == []


@pytest.mark.parametrize(
    ("value", "types"),
    [
        ("LoadBalancer", {"LoadBalancer", "ExternalIPs"}),
        ("NodePort", {"NodePort", "ExternalIPs"}),
        ("ClusterIP", {"ClusterIP", "ExternalIPs"}),
        ("Bogus", {"ClusterIP", "NodePort", "LoadBalancer", "ExternalIPs"}),
    ],
)
def test_type_annotation_provisions_only_that_type(value: str, types: set[str]) -> None:
    status = {"loadBalancer": {"ingress": [{"ip": "172.18.0.100"}]}}
    doc = svc(
        type="LoadBalancer",
        externalIPs=["203.0.113.7"],
        status=status,
        annotations={"service.cilium.io/type": value},
    )
    assert {t for _, t in fe_strings(doc)} == types


def test_two_scopes_when_exactly_one_policy_is_local() -> None:
    status = {"loadBalancer": {"ingress": [{"ip": "172.18.0.100"}]}}
    doc = svc(type="LoadBalancer", externalTrafficPolicy="Local", status=status)
    got = fe_strings(doc)
    assert ("0.0.0.0:30080/TCP/i", "NodePort") in got
    assert ("172.18.0.100:80/TCP/i", "LoadBalancer") in got
    assert not any(a.endswith("/i") for a, t in got if t == "ClusterIP")
    both = svc(type="NodePort", externalTrafficPolicy="Local", internalTrafficPolicy="Local")
    assert not any(a.endswith("/i") for a, _ in fe_strings(both))


def test_parse_errors_name_the_field() -> None:
    doc = svc(ports=[{"port": 0, "protocol": "ICMP"}], externalTrafficPolicy="Nearby")
    with pytest.raises(ValidationError) as err:
        parse_service(doc, source="svc.yaml")
    text = str(err.value)
    assert "svc.yaml: spec.ports[0].port: must be an integer between 1 and 65535" in text
    assert "spec.ports[0].protocol: unsupported protocol 'ICMP'" in text
    assert "spec.externalTrafficPolicy: must be Cluster or Local" in text
    bad = eps(ep("10.0.0.x"))
    with pytest.raises(ValidationError, match=r"endpoints\[0\]\.addresses\[0\]"):
        parse_endpoint_slice(bad)


def test_session_affinity_timeout() -> None:
    assert parse_service(svc()).session_affinity is False
    assert parse_service(svc(sessionAffinity="ClientIP")).affinity_timeout == 10800
    cfg = {"clientIP": {"timeoutSeconds": 60}}
    parsed = parse_service(svc(sessionAffinity="ClientIP", sessionAffinityConfig=cfg))
    assert (parsed.session_affinity, parsed.affinity_timeout) == (True, 60)


@pytest.mark.parametrize(
    ("ready", "serving", "terminating", "state"),
    [
        (True, True, False, BackendState.ACTIVE),
        (True, True, True, BackendState.ACTIVE),  # ready wins, as kube-proxy
        (False, True, True, BackendState.TERMINATING),
        (False, False, True, BackendState.TERMINATING_NOT_SERVING),
        (False, False, False, BackendState.MAINTENANCE),
    ],
)
def test_endpoint_conditions_to_state(
    ready: bool, serving: bool, terminating: bool, state: BackendState
) -> None:
    endpoint = Endpoint(addresses=(), ready=ready, serving=serving, terminating=terminating)
    assert endpoint_state(endpoint) is state


def test_unset_conditions_mean_ready() -> None:
    parsed = parse_endpoint_slice(eps({"addresses": ["10.0.0.1"]}))
    assert endpoint_state(parsed.endpoints[0]) is BackendState.ACTIVE


def test_weight_zero_means_maintenance() -> None:
    service = parse_service(svc())
    es = parse_endpoint_slice(eps(ep("10.0.0.1"), annotations={"service.cilium.io/weight": "0"}))
    assert [b.state for b in backends(service, [es])] == [BackendState.MAINTENANCE]


def selection_for(states: list[BackendState]) -> tuple[list[str], int, int, int]:
    service = parse_service(svc())
    cands = [
        Backend(
            address=backend_addr(f"10.0.0.{i + 1}"), state=s, port_names=("http",), node_name=NODE
        )
        for i, s in enumerate(states)
    ]
    sel = select(service, frontends(service)[0], cands, node_name=NODE)
    return [str(b.address.address) for b in sel.slots], sel.count, sel.qcount, len(sel.maintenance)


def backend_addr(ip: str) -> Any:
    from pylium.core.lb.addr import L3n4Addr, Protocol

    return L3n4Addr(ipaddress.ip_address(ip), 8080, Protocol.TCP)


def test_new_connections_only_to_active_while_any_is_left() -> None:
    a, t, tns, m, q = (
        BackendState.ACTIVE,
        BackendState.TERMINATING,
        BackendState.TERMINATING_NOT_SERVING,
        BackendState.MAINTENANCE,
        BackendState.QUARANTINED,
    )
    # Slot order: active, terminating, terminating-not-serving, quarantined; no maintenance.
    assert selection_for([t, q, a, m, tns]) == (
        ["10.0.0.3", "10.0.0.1", "10.0.0.5", "10.0.0.2"],
        1,
        3,
        1,
    )
    # No active backend left: terminating (serving) ones take new connections.
    assert selection_for([t, tns, t]) == (["10.0.0.1", "10.0.0.3", "10.0.0.2"], 2, 1, 0)
    # Terminating-not-serving is never selected, even alone; it stays for existing flows.
    assert selection_for([tns]) == (["10.0.0.1"], 0, 1, 0)


# The facts' table (§4.3), one row per (frontend type, scope, policies) case.
MATRIX = [
    # type, ETP, ITP, scope, uses
    ("ClusterIP", "Cluster", "Local", Scope.EXTERNAL, "local"),
    ("ClusterIP", "Cluster", "Cluster", Scope.EXTERNAL, "all"),
    ("ClusterIP", "Local", "Cluster", Scope.EXTERNAL, "all"),
    *(
        row
        for typ in ("NodePort", "LoadBalancer", "ExternalIPs")
        for row in (
            (typ, "Local", "Local", Scope.EXTERNAL, "local"),
            (typ, "Cluster", "Cluster", Scope.EXTERNAL, "all"),
            (typ, "Local", "Cluster", Scope.EXTERNAL, "local"),
            (typ, "Local", "Cluster", Scope.INTERNAL, "all"),
            (typ, "Cluster", "Local", Scope.EXTERNAL, "all"),
            (typ, "Cluster", "Local", Scope.INTERNAL, "local"),
        )
    ),
]


@pytest.mark.parametrize(("typ", "etp", "itp", "scope", "uses"), MATRIX)
def test_traffic_policy_matrix(typ: str, etp: str, itp: str, scope: Scope, uses: str) -> None:
    status = {"loadBalancer": {"ingress": [{"ip": "172.18.0.100"}]}}
    doc = svc(
        type="LoadBalancer",
        externalTrafficPolicy=etp,
        internalTrafficPolicy=itp,
        externalIPs=["203.0.113.7"],
        status=status,
    )
    service = parse_service(doc)
    slices = [parse_endpoint_slice(eps(ep("10.0.0.1", NODE), ep("10.0.0.2", "node-b")))]
    bes = backends(service, slices)
    fes = [
        f
        for f in frontends(service, node_addresses=NODE_IPS)
        if f.type.value == typ and f.address.scope is scope and not f.address.is_surrogate
    ]
    assert fes, "the frontend for this scope must exist"
    want = ["10.0.0.1"] if uses == "local" else ["10.0.0.1", "10.0.0.2"]
    for fe in fes:
        sel = select(service, fe, bes, node_name=NODE)
        assert [str(b.address.address) for b in sel.selectable] == want
    # Only the internal scope's rows exist when the policies differ.
    has_internal = any(f.address.scope is Scope.INTERNAL for f in frontends(service))
    assert has_internal == (etp != itp)


def test_etp_local_without_local_backend_has_no_slots() -> None:
    doc = svc(type="NodePort", externalTrafficPolicy="Local")
    service = parse_service(doc)
    bes = backends(service, [parse_endpoint_slice(eps(ep("10.0.0.2", "node-b")))])
    ext = [f for f in frontends(service) if f.type is SVCType.NODE_PORT]
    external = next(f for f in ext if f.address.scope is Scope.EXTERNAL)
    internal = next(f for f in ext if f.address.scope is Scope.INTERNAL)
    assert select(service, external, bes, node_name=NODE).count == 0
    assert select(service, internal, bes, node_name=NODE).count == 1


def test_port_name_picks_backends() -> None:
    doc = svc(ports=[{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    service = parse_service(doc)
    slice_doc = eps(ep("10.0.0.1"))
    slice_doc["ports"] = [
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "dns", "port": 5353, "protocol": "UDP"},
    ]
    bes = backends(service, [parse_endpoint_slice(slice_doc)])
    got = {
        str(f.address): [str(b.address) for b in select(service, f, bes, node_name=NODE).slots]
        for f in frontends(service)
    }
    assert got == {
        "10.96.1.1:80/TCP": ["10.0.0.1:8080/TCP"],
        "10.96.1.1:53/UDP": ["10.0.0.1:5353/UDP"],
    }


@pytest.mark.parametrize(
    ("annotations", "labels", "exposed"),
    [
        ({}, {}, True),
        ({"service.cilium.io/node": "edge"}, {"service.cilium.io/node": "edge"}, True),
        ({"service.cilium.io/node": "edge"}, {"service.cilium.io/node": "core"}, False),
        ({"service.cilium.io/node": "edge"}, {}, False),
        ({"service.cilium.io/node-selector": "role=edge"}, {"role": "edge"}, True),
        (
            {"service.cilium.io/node-selector": "role=edge", "service.cilium.io/node": "x"},
            {"role": "edge"},
            True,
        ),
        ({"service.cilium.io/node-selector": "role in (a, b),!gpu"}, {"role": "b"}, True),
        (
            {"service.cilium.io/node-selector": "role in (a, b),!gpu"},
            {"role": "b", "gpu": ""},
            False,
        ),
        ({"service.cilium.io/node-selector": "role notin (a),zone"}, {"zone": "z1"}, True),
        ({"service.cilium.io/node-selector": "role!=a"}, {"role": "a"}, False),
        ({"service.cilium.io/node-selector": "=broken("}, {}, True),  # ignored, as upstream
    ],
)
def test_node_exposure(annotations: dict[str, str], labels: dict[str, str], exposed: bool) -> None:
    assert node_exposes(annotations, labels) is exposed


def test_hostport_from_cni_port_mappings() -> None:
    sels = hostport_frontends(
        ServiceName("default", "web-0"),
        ipaddress.ip_address("10.0.0.9"),
        [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.168.1.10"},
        ],
        node_name=NODE,
        node_addresses=NODE_IPS,
    )
    got = [(str(s.frontend.address), s.frontend.type.value, str(s.slots[0].address)) for s in sels]
    assert got == [
        ("0.0.0.0:8080/TCP", "HostPort", "10.0.0.9:80/TCP"),
        ("192.168.1.10:8080/TCP", "HostPort", "10.0.0.9:80/TCP"),
        ("192.168.1.11:8080/TCP", "HostPort", "10.0.0.9:80/TCP"),
        ("192.168.1.10:5353/UDP", "HostPort", "10.0.0.9:53/UDP"),
    ]
    assert all(s.count == 1 for s in sels)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.lists(
            st.one_of(st.integers(0, 300).map(str), st.sampled_from(["01", "00", "", " 1", "1_0"])),
            min_size=3,
            max_size=5,
        ).map(".".join),
        st.text(max_size=12),
    )
)
def test_parse_ip_is_ip_address(text: str) -> None:
    """What ``ipaddress.ip_address`` gives, errors included (and again from the cache)."""
    try:
        want: object = ipaddress.ip_address(text)
    except ValueError:
        want = ValueError
    for _ in range(2):
        try:
            got: object = parse_ip(text)
        except ValueError:
            got = ValueError
        assert got == want and type(got) is type(want)
