"""The ring-buffer reader on bpf_lxc's own events (BPF_PROG_TEST_RUN repeated): batches drained
as raw records through the memory mapping, several times round the 1 MiB buffer (records
that wrap around its end included), every record whole and in order, the batch views
(types, identities, addresses) agreeing with the decoded events, nothing lost; waiting says
whether there is something to read."""

from __future__ import annotations

import ipaddress

import pytest

from pylium.adapters.bpf.objects import BpfObject, prog_test_run, prog_test_run_timed
from pylium.adapters.maps import events
from pylium.base.errors import DatapathError

from .packets import ipv4_tcp
from .seed import EP_A, POD_A, POD_B, seed

pytestmark = pytest.mark.root

PROGRAM = "cil_from_container"
WORLD = 2
BATCH = 7_001  # not a divisor of the buffer's records: batches end anywhere in it


def test_drains_whole_records_round_the_buffer(lxc: BpfObject) -> None:
    seed(lxc)
    prog = lxc.prog_fd(PROGRAM)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        assert len(reader.drain()) == 0
        ports = range(40_000, 40_008)
        capacity = (1 << 20) // events.RECORD
        rounds = 0
        while rounds * BATCH < 3 * capacity:
            port = ports[rounds % len(ports)]
            prog_test_run_timed(prog, ipv4_tcp(str(POD_A), "8.8.8.8", sport=port), repeat=BATCH)
            records = reader.drain()
            assert len(records) == BATCH and len(records.data) == BATCH * events.RECORD
            assert records.types() == bytes([events.TYPE_TRACE]) * BATCH
            assert records.identities() == {EP_A.identity, WORLD}
            assert records.addresses() == {POD_A, ipaddress.IPv4Address("8.8.8.8")}
            first, last = records.event(0), records.event(BATCH - 1)
            assert (first.sport, last.sport, last.saddr, last.dport) == (port, port, POD_A, 80)
            assert first.ts <= last.ts
            rounds += 1
        assert events.lost(lxc.map_fd(events.LOST_NAME)) == 0
    finally:
        reader.close()


def test_wait_says_whether_there_is_something_to_read(lxc: BpfObject) -> None:
    seed(lxc)
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        assert reader.wait(0) is False and reader.poll(0) == []
        prog_test_run(lxc.prog_fd(PROGRAM), ipv4_tcp(str(POD_A), str(POD_B), dport=8080))
        assert reader.wait(0) is True and reader.wait(60_000) is True  # still there
        (event,) = reader.poll(60_000)
        assert (event.saddr, event.daddr, event.dport) == (POD_A, POD_B, 8080)
        assert reader.wait(0) is False
    finally:
        reader.close()
    with pytest.raises(DatapathError, match="reader closed"):
        reader.drain()
