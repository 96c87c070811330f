"""The host firewall in the datapath (BPF_PROG_TEST_RUN): the host endpoint's policy map
(ID 0xffff) judges packets to the node's addresses at cil_from_netdev, from them at
cil_to_netdev, from local pods at from-container, from other nodes' pods through the tunnel at
from-overlay, and the host's packets to a local pod at to-container; replies pass through
conntrack; forwarded pod traffic and a node without the host map are never judged."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    BpfObject,
    prog_test_run,
)
from pylium.adapters.maps import config, ct, events, ipcache, policy
from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey
from pylium.core.policy.peers import Direction

from .packets import ACK, SYN, ipv4_tcp
from .seed import EP_A, POD_A, POD_B, REMOTE_NODE, seed

pytestmark = pytest.mark.root

HOST_EP = 0xFFFF
NODE = ipaddress.IPv4Address("192.168.1.11")
ROUTER = ipaddress.IPv4Address("10.0.1.1")
WORLD = "8.8.8.8"
REMOTE_NODE_ID, REMOTE_POD_ID = 6, 3003
INGRESS, EGRESS = Direction.INGRESS, Direction.EGRESS
ALLOW = MapEntry(False)


def key(direction: Direction, identity: int, port: int = 0) -> PolicyKey:
    return PolicyKey(direction, identity, 6 if port else 0, port, 16 if port else 0)


@pytest.fixture
def host(lxc: BpfObject, pin_dir: Path) -> Iterator[BpfObject]:
    seed(lxc)
    ipc = ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME))
    for ip, identity in ((NODE, 1), (ROUTER, 1), (REMOTE_NODE, REMOTE_NODE_ID)):
        ipc.upsert(ipaddress.IPv4Network(f"{ip}/32"), ipcache.Entry(identity=identity))
    obj = BpfObject(build("bpf_host"), pin_dir).load()
    yield obj
    obj.close()


@pytest.fixture
def maps(lxc: BpfObject, pin_dir: Path) -> policy.PolicyMaps:
    return policy.PolicyMaps(lxc.map_fd(policy.NAME), pin_dir)


def run(obj: BpfObject, program: str, packet: bytes, mark: int = 0) -> int:
    return prog_test_run(obj.prog_fd(program), packet, mark=mark)[0]


def test_without_the_host_map_nothing_is_judged_nor_tracked(
    lxc: BpfObject, host: BpfObject
) -> None:
    assert run(host, "cil_from_netdev", ipv4_tcp(WORLD, str(NODE), dport=22)) == TC_ACT_OK
    assert run(host, "cil_to_netdev", ipv4_tcp(str(NODE), WORLD, dport=80)) == TC_ACT_OK
    assert ct.CTMap(lxc.map_fd(ct.TCP_NAME)).dump() == {}


def test_ingress_to_the_node_judged_by_source_identity(
    lxc: BpfObject, host: BpfObject, maps: policy.PolicyMaps
) -> None:
    maps.write(HOST_EP, MapState({key(INGRESS, REMOTE_NODE_ID, 22): ALLOW, key(EGRESS, 0): ALLOW}))
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        node = str(NODE)
        assert run(host, "cil_from_netdev", ipv4_tcp(str(REMOTE_NODE), node, dport=22)) == TC_ACT_OK
        assert run(host, "cil_from_netdev", ipv4_tcp(WORLD, node, dport=22)) == TC_ACT_SHOT
        assert (
            run(host, "cil_from_netdev", ipv4_tcp(str(REMOTE_NODE), node, dport=23)) == TC_ACT_SHOT
        )
        drops = [e for e in reader.poll() if e.type == events.TYPE_DROP]
        assert [(d.reason, d.src_identity, d.dst_identity, d.dport) for d in drops] == [
            (133, 2, 1, 22),
            (133, REMOTE_NODE_ID, 1, 23),
        ]
    finally:
        reader.close()
    # Not for the node: forwarded to a pod (native routing), not the host firewall's.
    assert run(host, "cil_from_netdev", ipv4_tcp(WORLD, str(POD_A), dport=23)) == TC_ACT_OK


def test_egress_from_the_node_and_replies(host: BpfObject, maps: policy.PolicyMaps) -> None:
    maps.write(HOST_EP, MapState({key(EGRESS, 0, 443): ALLOW}))  # ingress: allow-any absent
    node = str(NODE)
    assert run(host, "cil_to_netdev", ipv4_tcp(node, WORLD, 40000, 443)) == TC_ACT_OK
    assert run(host, "cil_to_netdev", ipv4_tcp(node, WORLD, 40001, 80)) == TC_ACT_SHOT
    # The reply of the allowed connection passes the (default-deny) ingress; a stray does not.
    reply = ipv4_tcp(WORLD, node, 443, 40000, flags=SYN | ACK)
    assert run(host, "cil_from_netdev", reply) == TC_ACT_OK
    assert run(host, "cil_from_netdev", ipv4_tcp(WORLD, node, 443, 40009, SYN | ACK)) == TC_ACT_SHOT
    # A pod's packet leaving through the device (not masqueraded) is not the host's.
    assert run(host, "cil_to_netdev", ipv4_tcp(str(POD_A), WORLD, dport=80)) == TC_ACT_OK


def test_local_pods_to_the_host_and_the_host_to_pods(
    lxc: BpfObject, host: BpfObject, maps: policy.PolicyMaps
) -> None:
    maps.write(HOST_EP, MapState({key(INGRESS, EP_A.identity, 22): ALLOW}))
    from_container = "cil_from_container"
    assert run(lxc, from_container, ipv4_tcp(str(POD_A), str(NODE), dport=22)) == TC_ACT_OK
    assert run(lxc, from_container, ipv4_tcp(str(POD_B), str(NODE), dport=22)) == TC_ACT_SHOT
    assert run(lxc, from_container, ipv4_tcp(str(POD_A), str(ROUTER), dport=23)) == TC_ACT_SHOT
    # the host's reply to pod A's connection passes; the host opening to pod B does not
    # (egress enforced by the host map, no egress entry)
    to_container = "cil_to_container"
    reply = ipv4_tcp(str(NODE), str(POD_A), 22, 40000, flags=SYN | ACK)
    assert run(lxc, to_container, reply) == TC_ACT_OK
    assert run(lxc, to_container, ipv4_tcp(str(NODE), str(POD_B), dport=80)) == TC_ACT_SHOT
    # pod-to-pod is not the host's business
    assert run(lxc, from_container, ipv4_tcp(str(POD_A), str(POD_B), dport=22)) == TC_ACT_REDIRECT


def test_other_nodes_pods_through_the_tunnel(
    host: BpfObject, overlay: BpfObject, maps: policy.PolicyMaps
) -> None:
    maps.write(HOST_EP, MapState({key(INGRESS, REMOTE_POD_ID, 8081): ALLOW}))
    prog = "cil_from_overlay"
    packet = ipv4_tcp("10.0.2.20", str(ROUTER), dport=8081)
    assert run(overlay, prog, packet, mark=REMOTE_POD_ID) == TC_ACT_OK
    assert run(overlay, prog, packet, mark=REMOTE_POD_ID + 1) == TC_ACT_SHOT
    # the host's reply goes back through cilium_host into the tunnel; its own new
    # connection there meets the (default-deny) egress
    config.ConfigMap(host.map_fd(config.NAME)).set(tunnel_ifindex=1)
    reply = ipv4_tcp(str(ROUTER), "10.0.2.20", 8081, 40000, flags=SYN | ACK)
    assert run(host, "cil_from_host", reply) == TC_ACT_REDIRECT
    assert run(host, "cil_from_host", ipv4_tcp(str(ROUTER), "10.0.2.20", dport=9)) == TC_ACT_SHOT


def test_pod_traffic_to_a_remote_pod_is_not_judged(
    lxc: BpfObject, host: BpfObject, maps: policy.PolicyMaps
) -> None:
    maps.write(HOST_EP, MapState({}))  # the host denies everything
    assert run(lxc, "cil_from_container", ipv4_tcp(str(POD_A), str(POD_B))) == TC_ACT_REDIRECT
