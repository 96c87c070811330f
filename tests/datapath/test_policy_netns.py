"""Policy on real packets, without the agent: node and pod namespaces on veths, the programs
attached as the agent attaches them, TCP connections made by real sockets (the kernel's
handshakes, retransmissions and replies).

- one node: from-container on both pods' host veths, to-container on pod B's (host traffic);
- two nodes joined by a veth, each with a collect-metadata cilium_vxlan carrying the source
  identity in the VNI and from-overlay on it: the ingress policy judges the identity the
  tunnel key brings (the real helper, not the test-run stand-in).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import config, endpoints, ipcache, policy
from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey
from pylium.core.policy.peers import Direction

pytestmark = pytest.mark.root

POD_A, POD_B, ROUTER = "10.0.1.10", "10.0.1.11", "10.0.1.1"
HOST = "192.168.50.1"  # the node's own address, reserved:host in the ipcache
A_ID, B_ID, HOST_ID = 1001, 1002, 1
A_EP, B_EP = 101, 102
TCP = 6
NETNS_DIR = Path("/var/run/netns")
ALLOW = MapEntry(False)

SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
for port in (8080, 8081):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = """
import socket, sys
s = socket.socket(); s.settimeout(1.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print(s.recv(2).decode())
except OSError as err:
    print(type(err).__name__)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _link(ns: str, dev: str) -> tuple[int, bytes]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", dev], check=True, capture_output=True, text=True
    ).stdout
    info = json.loads(out)[0]
    return int(info["ifindex"]), bytes.fromhex(info["address"].replace(":", ""))


@contextmanager
def namespaces(*kinds: str) -> Iterator[list[str]]:
    tag = uuid.uuid4().hex[:6]
    names = [f"pyl-{kind}-{tag}" for kind in kinds]
    for ns in names:
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
    try:
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def add_pod(
    obj: BpfObject, node: str, pod: str, ip: str, ident: int, ep_id: int, lxc_dev: str
) -> None:
    """A pod as the CNI plugin and agent make it (veth, /32, gateway neighbour, endpoint and
    ipcache rows), with from-container on its host veth's tc ingress."""
    _ip("-n", node, "link", "add", lxc_dev, "type", "veth", "peer", "eth0", "netns", pod)
    _ip("-n", node, "link", "set", lxc_dev, "mtu", "1450", "up")
    _ip("-n", pod, "link", "set", "eth0", "mtu", "1450", "up")
    _ip("-n", pod, "addr", "add", f"{ip}/32", "dev", "eth0")
    _ip("-n", pod, "route", "add", ROUTER, "dev", "eth0", "scope", "link")
    _ip("-n", pod, "route", "add", "default", "via", ROUTER, "dev", "eth0")
    ifindex, lxc_mac = _link(node, lxc_dev)
    _, pod_mac = _link(pod, "eth0")
    _ip("-n", pod, "neigh", "add", ROUTER, "lladdr", lxc_mac.hex(":"), "dev", "eth0",
        "nud", "permanent")  # fmt: skip
    # the node reaches the pod through the kernel (to-container's path)
    _ip("-n", node, "route", "add", f"{ip}/32", "dev", lxc_dev)
    _ip("-n", node, "neigh", "add", ip, "lladdr", pod_mac.hex(":"), "dev", lxc_dev,
        "nud", "permanent")  # fmt: skip
    endpoints.EndpointsMap(obj.map_fd(endpoints.NAME)).upsert(
        ipaddress.IPv4Address(ip),
        endpoints.EndpointInfo(ifindex, ep_id, ident, mac=pod_mac, node_mac=lxc_mac),
    )
    ipcache.IPCacheMap(obj.map_fd(ipcache.NAME)).upsert(
        ipaddress.IPv4Network(f"{ip}/32"), ipcache.Entry(identity=ident)
    )
    obj.attach("cil_from_container", lxc_dev, netns=NETNS_DIR / node)


@contextmanager
def server(ns: str) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.communicate()  # reaps it and closes the pipes


def connect(ns: str, target: str, port: int) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, target, str(port)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def ingress(identity: int, port: int | None = None) -> PolicyKey:
    if port is None:
        return PolicyKey(Direction.INGRESS, identity)
    return PolicyKey(Direction.INGRESS, identity, TCP, port, 16)


ANY_EGRESS = PolicyKey(Direction.EGRESS, 0)


def test_one_node_pods_and_host(lxc: BpfObject) -> None:
    with namespaces("node", "pa", "pb") as (node, pod_a, pod_b):
        _ip("-n", node, "addr", "add", f"{HOST}/32", "dev", "lo")
        ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME)).upsert(
            ipaddress.IPv4Network(f"{HOST}/32"), ipcache.Entry(identity=HOST_ID)
        )
        add_pod(lxc, node, pod_a, POD_A, A_ID, A_EP, "lxca")
        add_pod(lxc, node, pod_b, POD_B, B_ID, B_EP, "lxcb")
        _ip("-n", node, "route", "replace", f"{POD_B}/32", "dev", "lxcb", "src", HOST)
        lxc.attach("cil_to_container", "lxcb", ingress=False, netns=NETNS_DIR / node)
        maps = policy.PolicyMaps(lxc.map_fd(policy.NAME))
        with server(pod_b):
            # no policy wired: everything passes
            assert connect(pod_a, POD_B, 8081) == "ok"
            assert connect(node, POD_B, 8081) == "ok"
            # B accepts A on 8080 only and may open nothing itself; A may open anything and
            # accepts nothing: the SYN-ACKs and data back are replies, let through by conntrack
            maps.write(A_EP, MapState({ANY_EGRESS: ALLOW}))
            maps.write(B_EP, MapState({ingress(A_ID, 8080): ALLOW}))
            assert connect(pod_a, POD_B, 8080) == "ok"
            assert connect(pod_a, POD_B, 8081) == "TimeoutError"
            # the host's connection goes through to-container as identity 1: denied, then allowed
            assert connect(node, POD_B, 8080) == "TimeoutError"
            maps.write(B_EP, MapState({ingress(A_ID, 8080): ALLOW, ingress(HOST_ID): ALLOW}))
            assert connect(node, POD_B, 8080) == "ok"
            assert connect(node, POD_B, 8081) == "ok"
            maps.delete(B_EP)
            assert connect(pod_a, POD_B, 8081) == "ok"


def test_two_nodes_through_the_tunnel(pin_dir: Path) -> None:
    remote_pod, node_ips = "10.0.2.20", ("192.168.77.1", "192.168.77.2")
    remote_id, remote_ep = 2002, 201
    loaded: list[BpfObject] = []
    try:
        with namespaces("n1", "n2", "p1", "p2") as (n1, n2, p1, p2):
            _ip("-n", n1, "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", n2)
            objs = []
            for node, node_ip in zip((n1, n2), node_ips, strict=True):
                _ip("-n", node, "addr", "add", f"{node_ip}/24", "dev", "eth0")
                _ip("-n", node, "link", "set", "eth0", "up")
                _ip("-n", node, "link", "add", "cilium_vxlan", "type", "vxlan", "external",
                    "dstport", "8472")  # fmt: skip
                _ip("-n", node, "link", "set", "cilium_vxlan", "up")
                lxc = BpfObject(build("bpf_lxc"), pin_dir / node).load()
                overlay = BpfObject(build("bpf_overlay"), pin_dir / node).load()
                loaded += [lxc, overlay]
                overlay.attach("cil_from_overlay", "cilium_vxlan", netns=NETNS_DIR / node)
                vxlan, _ = _link(node, "cilium_vxlan")
                config.ConfigMap(lxc.map_fd(config.NAME)).set(tunnel_ifindex=vxlan)
                objs.append(lxc)
            lxc1, lxc2 = objs
            add_pod(lxc1, n1, p1, POD_A, A_ID, A_EP, "lxc1")
            add_pod(lxc2, n2, p2, remote_pod, remote_id, remote_ep, "lxc2")
            for obj, ip, ident, node_ip in (
                (lxc1, remote_pod, remote_id, node_ips[1]),
                (lxc2, POD_A, A_ID, node_ips[0]),
            ):
                ipcache.IPCacheMap(obj.map_fd(ipcache.NAME)).upsert(
                    ipaddress.IPv4Network(f"{ip}/32"),
                    ipcache.Entry(identity=ident, tunnel_endpoint=ipaddress.IPv4Address(node_ip)),
                )
            maps1 = policy.PolicyMaps(lxc1.map_fd(policy.NAME))
            maps2 = policy.PolicyMaps(lxc2.map_fd(policy.NAME))
            with server(p2):
                assert connect(p1, remote_pod, 8081) == "ok"
                # P1 accepts nothing (the answers come back as replies through its node's
                # from-overlay); P2 accepts P1's identity on 8080, as the VNI carries it
                maps1.write(A_EP, MapState({ANY_EGRESS: ALLOW}))
                maps2.write(remote_ep, MapState({ingress(A_ID, 8080): ALLOW}))
                assert connect(p1, remote_pod, 8080) == "ok"
                assert connect(p1, remote_pod, 8081) == "TimeoutError"
                maps2.write(remote_ep, MapState({ingress(A_ID + 1, 8080): ALLOW}))
                assert connect(p1, remote_pod, 8080) == "TimeoutError"
    finally:
        for obj in loaded:
            obj.close()
