"""Typed views built from validated resources: the fields the cores read, as ipaddress
objects and tuples, with Cilium's fallbacks (podCIDR, podIP) and kind checks."""

from __future__ import annotations

import ipaddress

import pytest

from pylium.base.errors import ValidationError
from pylium.model import codec
from pylium.model.views import (
    CiliumNode,
    CiliumPodIPPool,
    ContainerPort,
    IPOwner,
    Namespace,
    Node,
    Pod,
    PoolAllocation,
    PoolRequest,
    view,
)

net = ipaddress.ip_network
ip = ipaddress.ip_address

CILIUM_NODE = """\
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
spec:
  instance-id: i-0abc
  addresses:
  - {type: InternalIP, ip: 192.168.1.11}
  - {type: CiliumInternalIP, ip: 10.0.1.1}
  health: {ipv4: 10.0.1.7}
  ipam:
    podCIDRs: [10.0.1.0/24, fd00:1::/64]
    pools:
      requested:
      - pool: blue
        needed: {ipv4-addrs: 16}
      allocated:
      - {pool: blue, cidrs: [10.20.3.0/27], allowFirstIP: true}
    pre-allocate: 8
status:
  ipam:
    used:
      10.0.1.9: {owner: default/web-1, resource: default/web-1}
    pod-cidrs:
      10.0.1.0/24: {status: in-use}
    operator-status: {error: "pool exhausted"}
"""


def test_cilium_node_view() -> None:
    (res,) = codec.parse_documents(CILIUM_NODE, "cn.yaml")
    cn = CiliumNode.from_resource(res)
    assert cn.name == "n1" and cn.instance_id == "i-0abc"
    assert cn.pod_cidrs == (net("10.0.1.0/24"), net("fd00:1::/64"))
    assert cn.address() == ip("192.168.1.11")
    assert cn.address("CiliumInternalIP") == ip("10.0.1.1")
    assert cn.address("ExternalIP") is None
    assert cn.health_ipv4 == ip("10.0.1.7") and cn.health_ipv6 is None
    assert cn.pools_requested == (PoolRequest(pool="blue", ipv4_addrs=16, ipv6_addrs=0),)
    assert cn.pools_allocated == (
        PoolAllocation(
            pool="blue", cidrs=(net("10.20.3.0/27"),), allow_first_ip=True, allow_last_ip=False
        ),
    )
    assert cn.pre_allocate == 8 and cn.max_allocate is None
    assert cn.used == {"10.0.1.9": IPOwner(owner="default/web-1", resource="default/web-1")}
    assert cn.pod_cidr_status == {"10.0.1.0/24": "in-use"}
    assert cn.operator_error == "pool exhausted"


def test_empty_cilium_node_has_empty_fields() -> None:
    res = codec.validate(
        {"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": "n2"}}
    )
    cn = CiliumNode.from_resource(res)
    assert (cn.pod_cidrs, cn.addresses, cn.pools_allocated, cn.operator_error) == ((), (), (), "")
    assert cn.used == {} and cn.pool == {}


def test_node_view_falls_back_to_singular_pod_cidr() -> None:
    res = codec.validate(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "annotations": {"a": "b"}},
            "spec": {"podCIDR": "10.244.1.0/24", "providerID": "kind://n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]},
        }
    )
    node = Node.from_resource(res)
    assert node.pod_cidrs == (net("10.244.1.0/24"),)
    assert node.address() == "172.18.0.2" and node.address("Hostname") is None
    assert node.annotations == {"a": "b"} and node.provider_id == "kind://n1"
    assert not node.unschedulable


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
  annotations: {ipam.cilium.io/ip-pool: blue}
spec:
  nodeName: n1
  containers:
  - name: web
    image: nginx
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 9090, protocol: UDP, hostPort: 9090}
  - name: sidecar
    ports:
    - {name: http, containerPort: 15001}
    - {name: admin, containerPort: 15000}
status:
  podIP: 10.0.1.9
"""


def test_pod_view() -> None:
    (res,) = codec.parse_documents(POD, "pod.yaml")
    pod = Pod.from_resource(res)
    assert (pod.namespace, pod.name, pod.node_name) == ("default", "web-1", "n1")
    assert pod.labels == {"app": "web"}
    assert pod.annotations["ipam.cilium.io/ip-pool"] == "blue"
    assert pod.pod_ip == ip("10.0.1.9") and pod.pod_ips == (ip("10.0.1.9"),)
    assert len(pod.ports) == 4
    assert pod.ports[1] == ContainerPort(
        container="web", name="", port=9090, protocol="UDP", host_port=9090
    )
    # the first container that names a port wins
    assert pod.named_ports["http"].port == 8080
    assert sorted(pod.named_ports) == ["admin", "http"]


def test_pod_ips_prefer_the_list() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "prod"},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"podIP": "10.0.1.9", "podIPs": [{"ip": "10.0.1.9"}, {"ip": "fd00:1::9"}]},
    }
    pod = Pod.from_resource(codec.validate(body))
    assert pod.pod_ips == (ip("10.0.1.9"), ip("fd00:1::9"))
    unassigned = Pod.from_resource(codec.validate({**body, "status": {"phase": "Pending"}}))
    assert unassigned.pod_ip is None and unassigned.phase == "Pending"


def test_pool_and_namespace_views() -> None:
    pool_body = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumPodIPPool",
        "metadata": {"name": "blue"},
        "spec": {
            "ipv4": {"cidrs": ["10.20.0.0/16", "10.21.0.0/16"], "maskSize": 27},
            "namespaceSelector": {"matchLabels": {"team": "blue"}},
        },
    }
    pool = CiliumPodIPPool.from_resource(codec.validate(pool_body))
    assert pool.ipv4 is not None and pool.ipv6 is None
    assert pool.ipv4.cidrs == (net("10.20.0.0/16"), net("10.21.0.0/16"))
    assert pool.ipv4.mask_size == 27
    assert pool.namespace_selector == {"matchLabels": {"team": "blue"}}
    assert pool.pod_selector is None and not pool.allow_first_ip
    ns_body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "prod", "labels": {"team": "blue"}},
    }
    assert view(codec.validate(ns_body), Namespace).labels == {"team": "blue"}


def test_views_check_the_kind() -> None:
    res = codec.validate({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    assert view(res, Node).name == "n1"
    with pytest.raises(ValidationError, match='"Node": expected CiliumNode'):
        CiliumNode.from_resource(res)
    with pytest.raises(ValidationError, match="expected Pod"):
        view(res, Pod)
