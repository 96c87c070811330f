"""Policy on real packets: a node namespace with two pod namespaces on veths, bpf_lxc's
from-container on both host-side veths' tc ingress and to-container on pod B's tc egress, TCP
connections made by real sockets (the kernel's handshakes, retransmissions and replies)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import endpoints, ipcache, policy
from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey
from pylium.core.policy.peers import Direction

pytestmark = pytest.mark.root

POD_A, POD_B, ROUTER = "10.0.1.10", "10.0.1.11", "10.0.1.1"
HOST = "192.168.50.1"  # the node's own address, reserved:host in the ipcache
A_ID, B_ID, HOST_ID = 1001, 1002, 1
A_EP, B_EP = 101, 102
TCP = 6
NETNS_DIR = Path("/var/run/netns")

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


@dataclass
class Topology:
    node: str
    pod_a: str
    pod_b: str
    lxc_b: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _link(ns: str, dev: str) -> tuple[int, bytes]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "link", "show", dev], check=True, capture_output=True, text=True
    ).stdout
    info = json.loads(out)[0]
    return int(info["ifindex"]), bytes.fromhex(info["address"].replace(":", ""))


@pytest.fixture
def topology(lxc: BpfObject) -> Iterator[Topology]:
    tag = uuid.uuid4().hex[:6]
    node, pod_a, pod_b = f"pyl-pn-{tag}", f"pyl-pa-{tag}", f"pyl-pb-{tag}"
    for ns in (node, pod_a, pod_b):
        _ip("netns", "add", ns)
    try:
        _ip("-n", node, "link", "set", "lo", "up")
        _ip("-n", node, "addr", "add", f"{HOST}/32", "dev", "lo")
        eps = endpoints.EndpointsMap(lxc.map_fd(endpoints.NAME))
        ipc = ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME))
        ipc.upsert(ipaddress.IPv4Network(f"{HOST}/32"), ipcache.Entry(identity=HOST_ID))
        for pod_ns, ip, ident, ep_id, lxc_dev in (
            (pod_a, POD_A, A_ID, A_EP, "lxca"),
            (pod_b, POD_B, B_ID, B_EP, "lxcb"),
        ):
            _ip("-n", node, "link", "add", lxc_dev, "type", "veth", "peer", "eth0", "netns", pod_ns)
            _ip("-n", node, "link", "set", lxc_dev, "up")
            _ip("-n", pod_ns, "link", "set", "lo", "up")
            _ip("-n", pod_ns, "link", "set", "eth0", "up")
            _ip("-n", pod_ns, "addr", "add", f"{ip}/32", "dev", "eth0")
            _ip("-n", pod_ns, "route", "add", ROUTER, "dev", "eth0", "scope", "link")
            _ip("-n", pod_ns, "route", "add", "default", "via", ROUTER, "dev", "eth0")
            ifindex, lxc_mac = _link(node, lxc_dev)
            _, pod_mac = _link(pod_ns, "eth0")
            _ip("-n", pod_ns, "neigh", "add", ROUTER, "lladdr", lxc_mac.hex(":"), "dev", "eth0",
                "nud", "permanent")  # fmt: skip
            # the host reaches the pod through the kernel (to-container's path)
            _ip("-n", node, "route", "add", f"{ip}/32", "dev", lxc_dev, "src", HOST)
            _ip("-n", node, "neigh", "add", ip, "lladdr", pod_mac.hex(":"), "dev", lxc_dev,
                "nud", "permanent")  # fmt: skip
            eps.upsert(
                ipaddress.IPv4Address(ip),
                endpoints.EndpointInfo(ifindex, ep_id, ident, mac=pod_mac, node_mac=lxc_mac),
            )
            ipc.upsert(ipaddress.IPv4Network(f"{ip}/32"), ipcache.Entry(identity=ident))
            lxc.attach("cil_from_container", lxc_dev, netns=NETNS_DIR / node)
        lxc.attach("cil_to_container", "lxcb", ingress=False, netns=NETNS_DIR / node)
        yield Topology(node, pod_a, pod_b, "lxcb")
    finally:
        for ns in (pod_a, pod_b, node):
            subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def server(topology: Topology) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topology.pod_b, sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield
    proc.kill()
    proc.communicate()  # reaps it and closes the pipes


def connect(ns: str, port: int) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, POD_B, str(port)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def test_policy_on_real_connections(lxc: BpfObject, topology: Topology, server: None) -> None:
    maps = policy.PolicyMaps(lxc.map_fd(policy.NAME))
    # no policy wired: everything passes
    assert connect(topology.pod_a, 8081) == "ok"
    assert connect(topology.node, 8081) == "ok"
    # B accepts A on 8080 only and may open nothing itself; A may open anything and accepts
    # nothing: the SYN-ACKs and data back are replies, let through by conntrack
    maps.write(A_EP, MapState({PolicyKey(Direction.EGRESS, 0): MapEntry(False)}))
    maps.write(B_EP, MapState({PolicyKey(Direction.INGRESS, A_ID, TCP, 8080, 16): MapEntry(False)}))
    assert connect(topology.pod_a, 8080) == "ok"
    assert connect(topology.pod_a, 8081) == "TimeoutError"
    # the host's connection goes through to-container with identity 1: denied, then allowed
    assert connect(topology.node, 8080) == "TimeoutError"
    maps.write(
        B_EP,
        MapState(
            {
                PolicyKey(Direction.INGRESS, A_ID, TCP, 8080, 16): MapEntry(False),
                PolicyKey(Direction.INGRESS, HOST_ID): MapEntry(False),
            }
        ),
    )
    assert connect(topology.node, 8080) == "ok"
    assert connect(topology.node, 8081) == "ok"
    maps.delete(B_EP)
    assert connect(topology.pod_a, 8081) == "ok"
