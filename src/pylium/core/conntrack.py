"""L2: connection tracking housekeeping, as upstream's conntrack garbage collector does it
(``pkg/maps/ctmap/gc``, ``ctmap.PurgeOrphanNATEntries``), and the text of ``cilium-dbg bpf
nat list``.

Conntrack entries are keyed by the tuple of a connection's opening packet
(:class:`Tuple`); the datapath treats an entry as absent once ``lifetime`` (seconds on the
monotonic clock) is in the past, and the GC deletes such entries. The NodePort NAT map
(``pylium_snat_v4_external``, bpf/lib/nat.h) holds, per connection from a client C:cp to a
frontend FE:fp served by a backend B:bp, up to three entries:

* ``(C:cp -> B:bp, OUT) -> S:sp``: the SNAT of a remote backend's connection;
* ``(B:bp -> S:sp, IN) -> C:cp``: its reverse;
* ``(B:bp -> C:cp, SERVICE) -> FE:fp``: the reverse DNAT of the backend's replies.

They belong to the connection's service conntrack entry ``(C:cp -> FE:fp, SERVICE)`` (the
load balancer's node), or to the entry of a pod that accepted it, ``(C:cp -> B:bp, IN)`` (a
local backend, a DSR backend's node). A NAT entry none of whose owners is alive is an
orphan: the GC deletes it with the expired conntrack entries, instead of leaving it to LRU
eviction.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

TUPLE_F_OUT = 0
TUPLE_F_IN = 1
TUPLE_F_RELATED = 2
TUPLE_F_SERVICE = 4

PROTOCOL_NAMES = {0: "ANY", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
"""``u8proto`` names, as upstream prints a tuple's next header."""

GC_STARTING_INTERVAL = 300.0
"""Seconds before the second GC run when ``conntrack-gc-interval`` is 0 (dynamic)."""
GC_MIN_INTERVAL = 10.0
GC_MAX_LRU_INTERVAL = 12 * 3600.0
"""The longest dynamic interval for LRU maps (all of pylium's conntrack maps are LRU)."""
NAT_GC_GRACE = 10
"""Seconds a new NAT entry is kept whatever the conntrack maps say: a DSR backend's node
records the reverse DNAT before the pod's conntrack entry exists, and a GC pass reads the
two maps at different moments."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tuple:
    """``struct ipv4_ct_tuple``: the key of the conntrack and NAT maps."""

    daddr: ipaddress.IPv4Address
    saddr: ipaddress.IPv4Address
    dport: int
    sport: int
    nexthdr: int
    flags: int = TUPLE_F_OUT


@dataclass(frozen=True, slots=True)
class NATEntry:
    """``struct ipv4_nat_entry``: where the tuple's packets are translated to (source for
    OUT and SERVICE, destination for IN), and when the entry was made (monotonic seconds)."""

    address: ipaddress.IPv4Address
    port: int
    created: int = 0
    needs_ct: int = 0


def expired(lifetime: int, now: int) -> bool:
    """A conntrack entry the datapath no longer sees (``ct_find4``: alive while
    ``lifetime >= now``)."""
    return lifetime < now


def nat_owners(key: Tuple, entry: NATEntry, nat: Mapping[Tuple, NATEntry]) -> tuple[Tuple, ...]:
    """The conntrack entries any of which keeps this NAT entry (see the module docstring).
    The frontend of an OUT or IN entry is the value of its connection's SERVICE entry; with
    that gone only a local pod's entry can own it."""
    if key.flags & TUPLE_F_IN:
        client, client_port = entry.address, entry.port
        backend, backend_port = key.saddr, key.sport
    elif key.flags & TUPLE_F_SERVICE:
        client, client_port = key.daddr, key.dport
        backend, backend_port = key.saddr, key.sport
    else:
        client, client_port = key.saddr, key.sport
        backend, backend_port = key.daddr, key.dport

    def from_client(daddr: ipaddress.IPv4Address, dport: int, flags: int) -> Tuple:
        return Tuple(
            daddr=daddr, saddr=client, dport=dport, sport=client_port,
            nexthdr=key.nexthdr, flags=flags,
        )  # fmt: skip

    if key.flags & TUPLE_F_SERVICE:
        frontend: NATEntry | None = entry
    else:
        reverse = Tuple(
            daddr=client, saddr=backend, dport=client_port, sport=backend_port,
            nexthdr=key.nexthdr, flags=TUPLE_F_SERVICE,
        )  # fmt: skip
        frontend = nat.get(reverse)
    accepted = from_client(backend, backend_port, TUPLE_F_IN)
    if frontend is None:
        return (accepted,)
    service = from_client(frontend.address, frontend.port, TUPLE_F_SERVICE)
    return (service, accepted)


def nat_orphans(
    nat: Mapping[Tuple, NATEntry], alive: Collection[Tuple], now: int, grace: int = NAT_GC_GRACE
) -> list[Tuple]:
    """The NAT entries to delete: older than ``grace`` seconds and owned by no conntrack
    entry in ``alive``."""
    return [
        key
        for key, entry in nat.items()
        if now - entry.created >= grace
        and not any(owner in alive for owner in nat_owners(key, entry, nat))
    ]


def _round_seconds(value: float) -> float:
    """Go's ``Duration.Round(time.Second)`` for a positive duration (half away from zero)."""
    return float(math.floor(value + 0.5))


def next_gc_interval(
    expected_prev: float,
    actual_prev: float,
    max_delete_ratio: float,
    *,
    fixed: float = 0.0,
    max_interval: float = 0.0,
) -> float:
    """Seconds to the next GC run, upstream's ``getIntervalWithConfig``: ``fixed``
    (``conntrack-gc-interval``) when set; else the previous interval (``expected_prev``, 0
    before the first run: :data:`GC_STARTING_INTERVAL`) shortened when more than a quarter
    of a map was deleted (at most 10x, not under :data:`GC_MIN_INTERVAL`) or made 1.5x longer
    when under 5 % was (up to :data:`GC_MAX_LRU_INTERVAL`), capped by ``max_interval``
    (``conntrack-gc-max-interval``, 0: none). A run that came early (``actual_prev`` shorter
    than expected) weighs its ratio up in proportion."""
    if fixed:
        return fixed
    ratio = max_delete_ratio
    if not expected_prev:
        expected_prev = GC_STARTING_INTERVAL
    elif 0 < actual_prev < expected_prev:
        ratio *= expected_prev / actual_prev
    interval = expected_prev
    if ratio > 0.25:
        interval = max(_round_seconds(expected_prev * (1.0 - min(ratio, 0.9))), GC_MIN_INTERVAL)
    elif 0 < ratio < 0.05:
        interval = min(_round_seconds(expected_prev * 1.5), GC_MAX_LRU_INTERVAL)
    if max_interval and interval > max_interval:
        interval = max_interval
    return interval


def protocol_name(nexthdr: int) -> str:
    return PROTOCOL_NAMES.get(nexthdr, str(nexthdr))


def nat_dump_line(key: Tuple, entry: NATEntry, now: int) -> str:
    """One entry as ``cilium-dbg bpf nat list`` prints it (``TupleKey4Global.Dump`` then
    ``NatEntry4.Dump``), e.g. ``TCP OUT 192.168.50.7:40000 -> 10.0.3.30:8080 XLATE_SRC
    10.0.1.1:40000 Created=12sec ago NeedsCT=0``."""
    inward = bool(key.flags & TUPLE_F_IN)
    words = [
        protocol_name(key.nexthdr),
        "IN" if inward else "OUT",
        f"{key.saddr}:{key.sport}",
        "->",
        f"{key.daddr}:{key.dport}",
    ]
    if key.flags & TUPLE_F_RELATED:
        words.append("related")
    if key.flags & TUPLE_F_SERVICE:
        words.append("service")
    words += [
        f"XLATE_{'DST' if inward else 'SRC'}",
        f"{entry.address}:{entry.port}",
        f"Created={now - entry.created}sec ago",
        f"NeedsCT={entry.needs_ct}",
    ]
    return " ".join(words)
