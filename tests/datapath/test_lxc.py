"""bpf_lxc's from-container program on crafted packets (BPF_PROG_TEST_RUN), maps seeded
through their Python wrappers: verdicts, local delivery, counters with Cilium's drop reasons,
trace/drop events in the ring buffer, and maps that outlive the loader."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pylium.adapters.bpf.objects import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    BpfObject,
    prog_test_run,
)
from pylium.adapters.maps import config, endpoints, events, ipcache, metrics
from pylium.adapters.maps.base import open_pinned

from .packets import ethernet, ipv4_tcp

pytestmark = pytest.mark.root

POD_A = ipaddress.IPv4Address("10.0.1.10")
POD_B = ipaddress.IPv4Address("10.0.1.11")
REMOTE = ipaddress.IPv4Address("10.0.2.20")
EGRESS = 2
POD_B_MAC = bytes.fromhex("0a0000000b0b")
LXC_B_MAC = bytes.fromhex("0a00000000b1")


def seed(obj: BpfObject) -> None:
    eps = endpoints.EndpointsMap(obj.map_fd(endpoints.NAME))
    eps.upsert(POD_A, endpoints.EndpointInfo(ifindex=11, endpoint_id=101, identity=1001))
    eps.upsert(
        POD_B,
        endpoints.EndpointInfo(
            ifindex=12, endpoint_id=102, identity=1002, mac=POD_B_MAC, node_mac=LXC_B_MAC
        ),
    )
    ipc = ipcache.IPCacheMap(obj.map_fd(ipcache.NAME))
    ipc.upsert(ipaddress.IPv4Network("10.0.1.11/32"), ipcache.Entry(identity=1002))
    ipc.upsert(
        ipaddress.IPv4Network("10.0.2.0/24"),
        ipcache.Entry(identity=6, tunnel_endpoint=ipaddress.IPv4Address("192.168.1.12")),
    )


def test_local_delivery_remote_routing_and_traces(lxc: BpfObject) -> None:
    seed(lxc)
    prog = lxc.prog_fd("cil_from_container")
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        packet = ipv4_tcp(str(POD_A), str(POD_B), dport=8080)
        verdict, out = prog_test_run(prog, packet)
        assert verdict == TC_ACT_REDIRECT  # into POD_B's namespace
        assert out[:12] == POD_B_MAC + LXC_B_MAC  # routed: from lxc B's MAC to pod B's
        assert out[12:] == packet[12:]
        verdict, _ = prog_test_run(prog, ipv4_tcp(str(POD_A), "8.8.8.8"))
        assert verdict == TC_ACT_OK  # not a pod: the kernel routes it

        got = reader.poll()
        assert [(e.type, e.reason) for e in got] == [(events.TYPE_TRACE, 0)] * 2
        local, world = got
        assert (local.saddr, local.daddr, local.dport, local.proto) == (POD_A, POD_B, 8080, 6)
        assert (local.src_identity, local.dst_identity) == (1001, 1002)
        assert world.dst_identity == 2  # no ipcache entry: reserved:world
        assert local.length == len(packet)

        # A pod behind another node: without a tunnel device configured it is dropped with
        # NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT; once configured, it goes to the tunnel.
        remote_packet = ipv4_tcp(str(POD_A), str(REMOTE), dport=443)
        verdict, _ = prog_test_run(prog, remote_packet)
        assert verdict == TC_ACT_SHOT
        trace, dropped = reader.poll()
        assert trace.dst_identity == 6  # the /24 prefix matched
        assert (dropped.type, dropped.reason) == (events.TYPE_DROP, 160)
        config.ConfigMap(lxc.map_fd(config.NAME)).set(tunnel_ifindex=1)
        verdict, _ = prog_test_run(prog, remote_packet)
        assert verdict == TC_ACT_REDIRECT
    finally:
        reader.close()
    totals = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert totals[(0, EGRESS)].count == 4
    assert totals[(160, EGRESS)].count == 1


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (ipv4_tcp("10.9.9.9", str(POD_B)), 132),  # source is not a local endpoint
        (ethernet(0x86DD), 139),  # IPv6 not enabled yet: unsupported L3
        # An IPv4 header claiming 16 bytes (ihl 4). (BPF_PROG_TEST_RUN itself refuses IPv4
        # packets shorter than a whole header, so truncation cannot be tested this way.)
        (ethernet(0x0800, b"\x44" + b"\0" * 19), 134),
    ],
)
def test_drops_counted_with_cilium_reasons(lxc: BpfObject, packet: bytes, reason: int) -> None:
    seed(lxc)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        verdict, _ = prog_test_run(lxc.prog_fd("cil_from_container"), packet)
        assert verdict == TC_ACT_SHOT
        drops = reader.poll()
        assert [(e.type, e.reason, e.direction) for e in drops] == [
            (events.TYPE_DROP, reason, EGRESS)
        ]
    finally:
        reader.close()
    assert metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()[(reason, EGRESS)].count == 1


def test_arp_passes_untouched(lxc: BpfObject) -> None:
    verdict, _ = prog_test_run(lxc.prog_fd("cil_from_container"), ethernet(0x0806))
    assert verdict == TC_ACT_OK


def test_pinned_maps_survive_the_loader(lxc_object: Path, pin_dir: Path) -> None:
    with BpfObject(lxc_object, pin_dir) as first:
        seed(first)
    # The loader is gone; another process would open the pins like this.
    ipc = ipcache.IPCacheMap(open_pinned(str(pin_dir / ipcache.NAME)))
    assert ipc.get(ipaddress.IPv4Network("10.0.2.0/24")) == ipcache.Entry(
        identity=6, tunnel_endpoint=ipaddress.IPv4Address("192.168.1.12")
    )
    # A new load reuses the same maps, contents included.
    with BpfObject(lxc_object, pin_dir) as second:
        eps = endpoints.EndpointsMap(second.map_fd(endpoints.NAME))
        assert eps.get(POD_A) == endpoints.EndpointInfo(ifindex=11, endpoint_id=101, identity=1001)
        ipcache.IPCacheMap(second.map_fd(ipcache.NAME)).delete(ipaddress.IPv4Network("10.0.2.0/24"))
    assert ipc.dump() == {ipaddress.IPv4Network("10.0.1.11/32"): ipcache.Entry(identity=1002)}
