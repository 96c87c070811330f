"""BPF host routing (bpf/lib/fib.h): from-container routes packets for other nodes with the
FIB itself, from-netdev delivers packets for local pods straight into them after the checks
to-container makes.

- BPF_PROG_TEST_RUN on cil_from_netdev: a packet for a local pod is redirected into it with
  the MACs a router writes and the TTL decremented (checksum still valid), judged by the pod's
  ingress policy with the source identity from the ipcache and tracked as accepted; with host
  routing off, or a TTL about to expire, it goes to the stack untouched.
- Real packets, in both modes, between two node namespaces joined by a veth (native routing:
  each node routes the other's pod CIDR via the other's address): the same connections pass
  and the same are denied, with the same drop events, under the agent's nftables masquerading
  (a pod's replies to another node's own address are not masqueraded); with BPF host routing
  the nodes' stacks forward nothing (their IP ForwDatagrams counters stay at 0, and the
  receiving node's underlay device has forwarding off), with Legacy they forward every packet.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import TC_ACT_OK, TC_ACT_REDIRECT, BpfObject, prog_test_run
from pylium.adapters.maps import ct, events, ipcache, policy
from pylium.core.policy.mapstate import MapState
from pylium.core.settings.checks import HostRouting, host_routing_constants
from pylium.testing.netstat import ip_forwarded

from .packets import SYN, _csum, ipv4_tcp
from .seed import EP_B, LXC_B_MAC, POD_B, POD_B_MAC, REMOTE, seed
from .test_policy_netns import (
    ALLOW,
    ANY_EGRESS,
    NETNS_DIR,
    _ip,
    add_pod,
    connect,
    ingress,
    namespaces,
    server,
)

pytestmark = pytest.mark.root

NATIVE_CIDR = ipaddress.IPv4Network("10.0.0.0/8")
BPF = host_routing_constants(HostRouting(True, snat_exclusion=NATIVE_CIDR))
LEGACY = host_routing_constants(HostRouting(False))
REMOTE_ID = 6  # the seed's remote CIDR entry
IP_OFF, TTL_OFF = 14, 14 + 8
Loader = Callable[[Mapping[str, int]], BpfObject]


@pytest.fixture
def load_host(lxc: BpfObject, pin_dir: Path) -> Iterator[Loader]:
    """Loads bpf_host with the given constants beside bpf_lxc (the same pinned maps)."""
    loaded: list[BpfObject] = []

    def load(constants: Mapping[str, int]) -> BpfObject:
        loaded.append(BpfObject(build("bpf_host"), pin_dir, constants=constants).load())
        return loaded[-1]

    yield load
    for obj in loaded:
        obj.close()


def from_netdev(host: BpfObject, packet: bytes) -> tuple[int, bytes]:
    return prog_test_run(host.prog_fd("cil_from_netdev"), packet)


def with_ttl(packet: bytes, ttl: int) -> bytes:
    ip = bytearray(packet[IP_OFF : IP_OFF + 20])
    ip[8], ip[10:12] = ttl, b"\0\0"
    ip[10:12] = struct.pack("!H", _csum(bytes(ip)))
    return packet[:IP_OFF] + bytes(ip) + packet[IP_OFF + 20 :]


def test_from_netdev_delivers_to_a_local_pod(lxc: BpfObject, load_host: Loader) -> None:
    host = load_host(BPF)
    seed(lxc)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        packet = ipv4_tcp(str(REMOTE), str(POD_B), dport=8080, flags=SYN)
        rc, out = from_netdev(host, packet)
        assert rc == TC_ACT_REDIRECT
        assert out[:12] == POD_B_MAC + LXC_B_MAC  # as a router delivers: to the pod's MAC
        assert out[TTL_OFF] == 63 and _csum(out[IP_OFF : IP_OFF + 20]) == 0
        assert out[IP_OFF + 20 :] == packet[IP_OFF + 20 :]
        trace = reader.drain().event(0)
        assert (trace.type, trace.obs_point, trace.direction) == (4, 0, 1)  # TO_LXC, ingress
        assert (trace.src_identity, trace.dst_identity) == (REMOTE_ID, EP_B.identity)
        tcp = ct.CTMap(lxc.map_fd(ct.TCP_NAME), ct.TCP_NAME)
        accepted = ct.Tuple(daddr=POD_B, saddr=REMOTE, dport=8080, sport=40000, nexthdr=6, flags=1)
        assert tcp.get(accepted) is not None  # TUPLE_F_IN: the pod's replies are replies

        # the pod's ingress policy, as to-container would check it: 133 with the identities
        maps = policy.PolicyMaps(lxc.map_fd(policy.NAME))
        maps.write(EP_B.endpoint_id, MapState({ingress(REMOTE_ID, 8080): ALLOW}))
        other = ipv4_tcp(str(REMOTE), str(POD_B), sport=40001, dport=8081, flags=SYN)
        assert from_netdev(host, other)[0] == 2  # TC_ACT_SHOT
        records = reader.drain()
        kinds = {(e.type, e.reason) for e in map(records.event, range(len(records)))}
        assert kinds == {(5, 133), (1, 133)}  # policy verdict and drop
        assert from_netdev(host, ipv4_tcp(str(REMOTE), str(POD_B), 40002, 8080))[0] == 7
    finally:
        reader.close()


def test_from_netdev_leaves_it_to_the_stack(lxc: BpfObject, load_host: Loader) -> None:
    seed(lxc)
    packet = ipv4_tcp(str(REMOTE), str(POD_B), dport=8080, flags=SYN)
    legacy = load_host(LEGACY)
    assert from_netdev(legacy, packet) == (TC_ACT_OK, packet)
    bpf = load_host(BPF)
    expiring = with_ttl(packet, 1)  # the stack answers time exceeded
    assert from_netdev(bpf, expiring) == (TC_ACT_OK, expiring)
    node_bound = ipv4_tcp(str(REMOTE), "192.168.1.11", dport=22)  # not a local endpoint
    assert from_netdev(bpf, node_bound) == (TC_ACT_OK, node_bound)


def drops(obj: BpfObject, reader: events.EventReader) -> set[tuple[int, int, int, int]]:
    records = reader.drain()
    return {
        (e.reason, e.direction, e.src_identity, e.dst_identity)
        for e in map(records.event, range(len(records)))
        if e.type == 1 and e.proto == 6  # not the pods' IPv6 chatter (139)
    }


def masquerade(node: str, pod_cidr: str) -> None:
    """The agent's nftables masquerading, in the node's namespace."""
    script = (
        "import ipaddress as a; from pylium.adapters.netlink import masquerade as m; "
        f"m.apply([a.IPv4Network('{pod_cidr}')], [a.IPv4Network('{NATIVE_CIDR}')])"
    )
    subprocess.run(["ip", "netns", "exec", node, sys.executable, "-c", script], check=True)


@pytest.mark.parametrize("mode", ["bpf", "legacy"])
def test_two_nodes_native_routing(pin_dir: Path, mode: str) -> None:
    pods, pod_ids, eps = ("10.0.1.10", "10.0.2.20"), (1001, 2002), (101, 201)
    node_ips, cidrs = ("192.168.78.1", "192.168.78.2"), ("10.0.1.0/24", "10.0.2.0/24")
    constants = BPF if mode == "bpf" else LEGACY
    loaded: list[BpfObject] = []
    try:
        with namespaces("hr1", "hr2", "hp1", "hp2") as (n1, n2, p1, p2):
            _ip("-n", n1, "link", "add", "eth0", "type", "veth", "peer", "eth0", "netns", n2)
            lxcs = []
            for i, node in enumerate((n1, n2)):
                forward = "0" if mode == "bpf" else "1"
                subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw",
                                f"net.ipv4.ip_forward={forward}"], check=True)  # fmt: skip
                _ip("-n", node, "addr", "add", f"{node_ips[i]}/24", "dev", "eth0")
                _ip("-n", node, "link", "set", "eth0", "up")
                _ip("-n", node, "route", "add", cidrs[1 - i], "via", node_ips[1 - i])
                lxc = BpfObject(build("bpf_lxc"), pin_dir / node, constants=constants).load()
                host = BpfObject(build("bpf_host"), pin_dir / node, constants=constants).load()
                loaded += [lxc, host]
                host.attach("cil_from_netdev", "eth0", netns=NETNS_DIR / node)
                lxcs.append(lxc)
            for i, (node, pod) in enumerate(((n1, p1), (n2, p2))):
                dev = f"lxc{i + 1}"
                add_pod(lxcs[i], node, pod, pods[i], pod_ids[i], eps[i], dev)
                lxcs[i].attach("cil_to_container", dev, ingress=False, netns=NETNS_DIR / node)
                # bpf_fib_lookup answers only for a device that forwards (the agent's
                # ip_forward=1 gives every device that; here the underlay keeps it off)
                subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw",
                                f"net.ipv4.conf.{dev}.forwarding=1"], check=True)  # fmt: skip
                ipcache.IPCacheMap(lxcs[1 - i].map_fd(ipcache.NAME)).upsert(
                    ipaddress.IPv4Network(f"{pods[i]}/32"), ipcache.Entry(identity=pod_ids[i])
                )
                masquerade(node, cidrs[i])
            reader = events.EventReader(lxcs[1].map_fd(events.NAME))
            try:
                with server(p2):
                    assert connect(p1, pods[1], 8081) == "ok"
                    # n1's own address is outside the non-masquerade CIDR: the pod's replies
                    # must still leave unmasqueraded (the stack never saw the connection)
                    assert connect(n1, pods[1], 8081) == "ok"
                    policy.PolicyMaps(lxcs[0].map_fd(policy.NAME)).write(
                        eps[0], MapState({ANY_EGRESS: ALLOW})
                    )
                    policy.PolicyMaps(lxcs[1].map_fd(policy.NAME)).write(
                        eps[1], MapState({ingress(pod_ids[0], 8080): ALLOW})
                    )
                    reader.drain()
                    assert connect(p1, pods[1], 8080) == "ok"
                    assert connect(p1, pods[1], 8081) == "TimeoutError"
                    assert drops(lxcs[1], reader) == {(133, 1, pod_ids[0], pod_ids[1])}
                routed_by_stack = ip_forwarded(n1) + ip_forwarded(n2)
                if mode == "bpf":
                    assert routed_by_stack == 0
                else:
                    assert routed_by_stack > 0
            finally:
                reader.close()
    finally:
        for obj in loaded:
            obj.close()
