"""bpf_lxc's from-container program on crafted packets (BPF_PROG_TEST_RUN), maps seeded
through their Python wrappers: verdicts, rewritten bytes, counters with Cilium's drop reasons,
trace/drop events read from the ring buffer."""

from __future__ import annotations

import pytest

from pylium.adapters.bpf.objects import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    BpfObject,
    prog_test_run,
)
from pylium.adapters.maps import config, events, metrics

from .packets import ethernet, ipv4, ipv4_tcp
from .seed import LXC_B_MAC, POD_A, POD_B, POD_B_MAC, REMOTE, seed

pytestmark = pytest.mark.root

EGRESS = 2
PROGRAM = "cil_from_container"


def test_local_delivery_remote_routing_and_traces(lxc: BpfObject) -> None:
    seed(lxc)
    prog = lxc.prog_fd(PROGRAM)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        packet = ipv4_tcp(str(POD_A), str(POD_B), dport=8080)
        verdict, out = prog_test_run(prog, packet)
        assert verdict == TC_ACT_REDIRECT  # into POD_B's namespace
        assert out[:12] == POD_B_MAC + LXC_B_MAC  # routed: from lxc B's MAC to pod B's
        assert out[12:] == packet[12:]
        verdict, out = prog_test_run(prog, ipv4_tcp(str(POD_A), "8.8.8.8"))
        assert verdict == TC_ACT_OK  # not a pod: the kernel routes it
        assert out == ipv4_tcp(str(POD_A), "8.8.8.8")  # untouched

        local, world = reader.poll()
        assert (local.type, local.obs_point, world.obs_point) == (
            events.TYPE_TRACE,
            events.TRACE_TO_LXC,
            events.TRACE_TO_STACK,
        )
        assert (local.saddr, local.daddr, local.sport, local.dport, local.proto) == (
            POD_A,
            POD_B,
            40000,
            8080,
            6,
        )
        assert (local.src_identity, local.dst_identity, local.source) == (1001, 1002, 101)
        assert (local.reason, local.tcp_flags, local.length) == (events.CT_NEW, 0x02, len(packet))
        assert world.dst_identity == 2  # no ipcache entry: reserved:world

        # A pod behind another node: without a tunnel device configured it is dropped with
        # NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT; once configured, it goes to the tunnel.
        remote_packet = ipv4_tcp(str(POD_A), str(REMOTE), dport=443)
        verdict, _ = prog_test_run(prog, remote_packet)
        assert verdict == TC_ACT_SHOT
        (dropped,) = reader.poll()
        assert (dropped.type, dropped.reason, dropped.dst_identity) == (events.TYPE_DROP, 160, 6)
        config.ConfigMap(lxc.map_fd(config.NAME)).set(tunnel_ifindex=1)
        verdict, _ = prog_test_run(prog, remote_packet)
        assert verdict == TC_ACT_REDIRECT
        (tunnelled,) = reader.poll()
        # the dropped packet had already opened the connection in conntrack
        assert (tunnelled.obs_point, tunnelled.reason) == (
            events.TRACE_TO_OVERLAY,
            events.CT_ESTABLISHED,
        )
    finally:
        reader.close()
    totals = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert totals[(0, EGRESS)].count == 3
    assert totals[(0, EGRESS)].bytes == 3 * len(packet)
    assert totals[(160, EGRESS)].count == 1


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (ipv4_tcp("10.9.9.9", str(POD_B)), 132),  # source is not a local endpoint
        (ethernet(0x86DD), 139),  # IPv6 not enabled yet: unsupported L3
        # An IPv4 header claiming 16 bytes (ihl 4). (BPF_PROG_TEST_RUN itself refuses IPv4
        # packets shorter than a whole header, so that truncation cannot be tested this way.)
        (ethernet(0x0800, b"\x44" + b"\0" * 19), 134),
        # TCP cut short after the ports: CT: truncated or invalid header.
        (ipv4(str(POD_A), str(POD_B), 6, b"\x9c\x40\x00\x50"), 135),
    ],
    ids=["invalid-source", "ipv6", "bad-ihl", "short-tcp"],
)
def test_drops_counted_with_cilium_reasons(lxc: BpfObject, packet: bytes, reason: int) -> None:
    seed(lxc)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        verdict, _ = prog_test_run(lxc.prog_fd(PROGRAM), packet)
        assert verdict == TC_ACT_SHOT
        drops = reader.poll()
        assert [(e.type, e.reason, e.direction) for e in drops] == [
            (events.TYPE_DROP, reason, EGRESS)
        ]
    finally:
        reader.close()
    totals = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert totals == {(reason, EGRESS): metrics.Counter(1, len(packet))}
    assert events.lost(lxc.map_fd(events.LOST_NAME)) == 0


def test_arp_passes_untouched(lxc: BpfObject) -> None:
    verdict, _ = prog_test_run(lxc.prog_fd(PROGRAM), ethernet(0x0806))
    assert verdict == TC_ACT_OK
    assert metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals() == {}
