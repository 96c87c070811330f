"""Conntrack in bpf_lxc (BPF_PROG_TEST_RUN): entries created in the right map under the
opening packet's tuple, states NEW/ESTABLISHED/REPLY in trace events, TCP flags per side,
lifetimes from the load-time constants, monitor aggregation."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping

import pytest

from pylium.adapters.bpf.objects import BpfObject, prog_test_run
from pylium.adapters.maps import ct, events
from pylium.base.errors import DatapathError

from .packets import ACK, FIN, SYN, ipv4_tcp, ipv4_udp
from .seed import POD_A, POD_B, seed

pytestmark = pytest.mark.root

PROGRAM = "cil_from_container"
Loader = Callable[[Mapping[str, int]], BpfObject]
A_TO_B = ct.Tuple(daddr=POD_B, saddr=POD_A, dport=8080, sport=40000, nexthdr=6)


def _now() -> int:
    """The BPF clock (bpf_ktime_get_ns is CLOCK_MONOTONIC) in seconds."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1_000_000_000


def _run(obj: BpfObject, packet: bytes) -> tuple[int, int, int]:
    """(seconds before, verdict, seconds after) around one run."""
    before = _now()
    verdict, _ = prog_test_run(obj.prog_fd(PROGRAM), packet)
    return before, verdict, _now()


def test_tcp_handshake_and_close(lxc: BpfObject) -> None:
    seed(lxc)
    tcp = ct.CTMap(lxc.map_fd(ct.TCP_NAME), ct.TCP_NAME)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        before, _, after = _run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=SYN))
        entry = tcp.get(A_TO_B)
        assert entry is not None
        assert (entry.packets, entry.tx_flags_seen, entry.rx_flags_seen) == (1, SYN, 0)
        assert entry.src_sec_id == 1001
        assert entry.flags == ct.EntryFlag(0)
        assert before + 60 <= entry.lifetime <= after + 60  # bpf-ct-timeout-regular-tcp-syn

        # B answers (its own from-container): the reversed tuple, so a reply.
        reply = ipv4_tcp(str(POD_B), str(POD_A), sport=8080, dport=40000, flags=SYN | ACK)
        _run(lxc, reply)
        before, _, after = _run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=ACK))
        entry = tcp.get(A_TO_B)
        assert entry is not None
        assert (entry.packets, entry.tx_flags_seen, entry.rx_flags_seen) == (
            3,
            SYN | ACK,
            SYN | ACK,
        )
        assert entry.flags == ct.EntryFlag.SEEN_NON_SYN
        assert before + 8000 <= entry.lifetime <= after + 8000  # established
        assert list(tcp.dump()) == [A_TO_B]  # one entry per connection, not per direction

        before, _, after = _run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=FIN | ACK))
        entry = tcp.get(A_TO_B)
        assert entry is not None
        assert entry.flags == ct.EntryFlag.SEEN_NON_SYN | ct.EntryFlag.TX_CLOSING
        assert before + 10 <= entry.lifetime <= after + 10  # closing

        states = [e.reason for e in reader.poll()]
        assert states == [
            events.CT_NEW,
            events.CT_REPLY,
            events.CT_ESTABLISHED,
            events.CT_ESTABLISHED,
        ]
    finally:
        reader.close()


def test_udp_goes_to_the_any_map(lxc: BpfObject) -> None:
    seed(lxc)
    _run(lxc, ipv4_udp(str(POD_A), "1.1.1.1", dport=53))
    udp = ct.Tuple(
        daddr=ipaddress.IPv4Address("1.1.1.1"), saddr=POD_A, dport=53, sport=40000, nexthdr=17
    )
    entry = ct.CTMap(lxc.map_fd(ct.ANY_NAME), ct.ANY_NAME).get(udp)
    assert entry is not None and entry.packets == 1
    assert ct.CTMap(lxc.map_fd(ct.TCP_NAME), ct.TCP_NAME).dump() == {}


def test_load_time_constants(load_lxc: Loader) -> None:
    obj = load_lxc({"ct_timeout_regular_tcp_syn": 5, "monitor_aggregation": 2})
    seed(obj)
    assert obj.loaded_constants() == {  # what the kernel holds, from the frozen .rodata map
        "ct_timeout_regular_tcp": 8000,
        "ct_timeout_regular_tcp_syn": 5,
        "ct_timeout_regular_tcp_fin": 10,
        "ct_timeout_regular_any": 60,
        "monitor_aggregation": 2,
        "enable_host_routing": 0,
        "enable_masquerade_ipv4": 0,
        "ipv4_snat_exclusion_dst_cidr": 0,
        "ipv4_snat_exclusion_dst_mask": 0,
    }

    reader = events.EventReader(obj.map_fd(events.NAME))
    try:
        before, _, after = _run(obj, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=SYN))
        entry = ct.CTMap(obj.map_fd(ct.TCP_NAME), ct.TCP_NAME).get(A_TO_B)
        assert entry is not None and before + 5 <= entry.lifetime <= after + 5
        _run(obj, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=ACK))
        _run(obj, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=ACK))
        # medium aggregation: the repeated ACK brings nothing new and is not traced
        assert [(e.reason, e.tcp_flags) for e in reader.poll()] == [
            (events.CT_NEW, SYN),
            (events.CT_ESTABLISHED, ACK),
        ]
    finally:
        reader.close()


def test_constants_are_checked(load_lxc: Loader) -> None:
    with pytest.raises(DatapathError, match=r"no ct_timeout_bogus .*monitor_aggregation"):
        load_lxc({"ct_timeout_bogus": 1})
    with pytest.raises(DatapathError, match="monitor_aggregation=256 does not fit 1 bytes"):
        load_lxc({"monitor_aggregation": 256})
