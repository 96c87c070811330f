"""Conntrack housekeeping decisions (pylium.core.conntrack): which NAT entries a finished
connection leaves orphaned, upstream's adaptive GC interval, ``bpf nat list``'s text."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from pylium.core.conntrack import (
    GC_MAX_LRU_INTERVAL,
    GC_MIN_INTERVAL,
    GC_STARTING_INTERVAL,
    NAT_GC_GRACE,
    TUPLE_F_IN,
    TUPLE_F_OUT,
    TUPLE_F_SERVICE,
    NATEntry,
    Tuple,
    expired,
    nat_dump_line,
    nat_orphans,
    nat_owners,
    next_gc_interval,
)

CLIENT, FRONTEND, BACKEND, SNAT = (
    IPv4Address(a) for a in ("192.168.50.7", "192.168.60.10", "10.0.3.30", "192.168.1.11")
)
TCP = 6


def tup(saddr: IPv4Address, sport: int, daddr: IPv4Address, dport: int, flags: int) -> Tuple:
    return Tuple(daddr=daddr, saddr=saddr, dport=dport, sport=sport, nexthdr=TCP, flags=flags)


def connection(client_port: int, snat_port: int, created: int = 0) -> dict[Tuple, NATEntry]:
    """The three entries of a NodePort connection SNATed to a remote backend (nat.h)."""
    return {
        tup(CLIENT, client_port, BACKEND, 8080, TUPLE_F_OUT): NATEntry(SNAT, snat_port, created),
        tup(BACKEND, 8080, SNAT, snat_port, TUPLE_F_IN): NATEntry(CLIENT, client_port, created),
        tup(BACKEND, 8080, CLIENT, client_port, TUPLE_F_SERVICE): NATEntry(FRONTEND, 80, created),
    }


def service_ct(client_port: int) -> Tuple:
    """The load balancer's conntrack entry of that connection (client -> frontend)."""
    return tup(CLIENT, client_port, FRONTEND, 80, TUPLE_F_SERVICE)


def test_every_entry_of_a_connection_belongs_to_its_service_conntrack_entry() -> None:
    nat = connection(40000, 40000)
    accepted = tup(CLIENT, 40000, BACKEND, 8080, TUPLE_F_IN)
    for key, entry in nat.items():
        assert nat_owners(key, entry, nat) == (service_ct(40000), accepted)


def test_without_the_reverse_dnat_only_a_local_pod_can_own_the_snat() -> None:
    nat = connection(40000, 40000)
    out = tup(CLIENT, 40000, BACKEND, 8080, TUPLE_F_OUT)
    del nat[tup(BACKEND, 8080, CLIENT, 40000, TUPLE_F_SERVICE)]
    assert nat_owners(out, nat[out], nat) == (tup(CLIENT, 40000, BACKEND, 8080, TUPLE_F_IN),)


def test_a_finished_connection_leaves_orphans_a_live_one_does_not() -> None:
    nat = connection(40000, 40000) | connection(40001, 33000)
    now = 1000
    orphans = nat_orphans(nat, alive={service_ct(40001)}, now=now)
    assert set(orphans) == set(connection(40000, 40000))
    assert nat_orphans(nat, alive={service_ct(40000), service_ct(40001)}, now=now) == []
    assert set(nat_orphans(nat, alive=set(), now=now)) == set(nat)


def test_a_local_backends_reverse_dnat_lives_with_the_pods_entry() -> None:
    # local backend (or DSR backend's node): only the SERVICE entry, owned by the pod's
    # conntrack entry for the accepted connection
    key = tup(BACKEND, 8080, CLIENT, 40000, TUPLE_F_SERVICE)
    nat = {key: NATEntry(FRONTEND, 80, 0)}
    assert nat_orphans(nat, alive={tup(CLIENT, 40000, BACKEND, 8080, TUPLE_F_IN)}, now=100) == []
    assert nat_orphans(nat, alive={tup(CLIENT, 40001, BACKEND, 8080, TUPLE_F_IN)}, now=100) == [key]


def test_new_entries_are_kept_for_the_grace_period() -> None:
    nat = connection(40000, 40000, created=500)
    assert nat_orphans(nat, alive=set(), now=500 + NAT_GC_GRACE - 1) == []
    assert len(nat_orphans(nat, alive=set(), now=500 + NAT_GC_GRACE)) == 3


def test_expired_as_the_datapath_sees_it() -> None:
    assert not expired(100, 100)  # ct_find4: alive while lifetime >= now
    assert expired(99, 100)


@pytest.mark.parametrize(
    ("expected", "actual", "ratio", "fixed", "cap", "interval"),
    [
        (0.0, 0.0, 0.0, 0.0, 0.0, GC_STARTING_INTERVAL),  # first run: 5 minutes
        (300.0, 300.0, 0.0, 0.0, 0.0, 300.0),  # nothing deleted: unchanged
        (300.0, 300.0, 0.01, 0.0, 0.0, 450.0),  # under 5 %: 1.5x
        (300.0, 300.0, 0.10, 0.0, 0.0, 300.0),  # 5-25 %: unchanged
        (300.0, 300.0, 0.50, 0.0, 0.0, 150.0),  # over 25 %: shorter by the ratio
        (300.0, 300.0, 0.99, 0.0, 0.0, 30.0),  # at most 10x shorter
        (20.0, 20.0, 0.99, 0.0, 0.0, GC_MIN_INTERVAL),  # never under 10 s
        (300.0, 150.0, 0.20, 0.0, 0.0, 180.0),  # an early run weighs its ratio up (0.4)
        (40000.0, 40000.0, 0.01, 0.0, 0.0, GC_MAX_LRU_INTERVAL),  # 12 h for LRU maps
        (300.0, 300.0, 0.01, 0.0, 400.0, 400.0),  # conntrack-gc-max-interval
        (300.0, 300.0, 0.99, 2.0, 0.0, 2.0),  # conntrack-gc-interval wins
    ],
)
def test_gc_interval_as_upstream(
    expected: float, actual: float, ratio: float, fixed: float, cap: float, interval: float
) -> None:
    got = next_gc_interval(expected, actual, ratio, fixed=fixed, max_interval=cap)
    assert got == interval


def test_nat_list_lines_as_cilium_dbg() -> None:
    nat = connection(40000, 33000, created=88)
    lines = sorted(nat_dump_line(k, e, now=100) for k, e in nat.items())
    assert lines == [
        "TCP IN 10.0.3.30:8080 -> 192.168.1.11:33000 XLATE_DST 192.168.50.7:40000 "
        "Created=12sec ago NeedsCT=0",
        "TCP OUT 10.0.3.30:8080 -> 192.168.50.7:40000 service XLATE_SRC 192.168.60.10:80 "
        "Created=12sec ago NeedsCT=0",
        "TCP OUT 192.168.50.7:40000 -> 10.0.3.30:8080 XLATE_SRC 192.168.1.11:33000 "
        "Created=12sec ago NeedsCT=0",
    ]
    udp = Tuple(daddr=BACKEND, saddr=CLIENT, dport=53, sport=9, nexthdr=17)
    assert nat_dump_line(udp, NATEntry(SNAT, 9), 0).startswith("UDP OUT ")
    other = Tuple(daddr=BACKEND, saddr=CLIENT, dport=0, sport=0, nexthdr=99)
    assert nat_dump_line(other, NATEntry(SNAT, 0), 0).startswith("99 OUT ")
