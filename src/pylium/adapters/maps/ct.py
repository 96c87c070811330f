"""L3: the IPv4 conntrack maps (``pylium_ct4_global`` for TCP, ``pylium_ct_any4_global`` for
everything else; Cilium's ``cilium_ct4_global`` / ``cilium_ct_any4_global``), one layout.

C (bpf/lib/conntrack.h)::

    struct ipv4_ct_tuple { __u32 daddr; __u32 saddr; __u16 dport; __u16 sport;
                           __u8 nexthdr; __u8 flags; } __attribute__((packed));
    struct ct_entry { __u64 reserved0; __u64 backend_id; __u64 packets; __u64 bytes;
                      __u32 lifetime; __u16 flags; __u16 rev_nat_index; __u16 ifindex;
                      __u8 tx_flags_seen; __u8 rx_flags_seen; __u32 src_sec_id;
                      __u32 last_tx_report; __u32 last_rx_report; };

Addresses and ports are in network byte order. An entry is keyed by the tuple of the packet
that opened the connection (``flags``: 0 OUT, 1 IN); ``lifetime`` is in seconds of the
monotonic clock. ``flags`` bits keep the positions of Cilium's bitfield.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from pylium.adapters.maps.base import Layout, RawMap
from pylium.core.conntrack import TUPLE_F_IN, TUPLE_F_OUT, TUPLE_F_SERVICE, Tuple

__all__ = ["TUPLE_F_IN", "TUPLE_F_OUT", "TUPLE_F_SERVICE", "Tuple"]

TCP_NAME = "pylium_ct4_global"
ANY_NAME = "pylium_ct_any4_global"
KEY = Layout(
    "ipv4_ct_tuple", "=4s4s2s2sBB", ("daddr", "saddr", "dport", "sport", "nexthdr", "flags")
)
VALUE = Layout(
    "ct_entry",
    "=QQQQIHHHBBIII",
    (
        "reserved0",
        "backend_id",
        "packets",
        "bytes",
        "lifetime",
        "flags",
        "rev_nat_index",
        "ifindex",
        "tx_flags_seen",
        "rx_flags_seen",
        "src_sec_id",
        "last_tx_report",
        "last_rx_report",
    ),
)


class EntryFlag(enum.IntFlag):
    RX_CLOSING = 1 << 0
    TX_CLOSING = 1 << 1
    SEEN_NON_SYN = 1 << 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    packets: int
    bytes: int
    lifetime: int
    flags: EntryFlag
    tx_flags_seen: int
    rx_flags_seen: int
    src_sec_id: int
    rev_nat_index: int = 0
    backend_id: int = 0


def encode_key(t: Tuple) -> bytes:
    return KEY.struct.pack(
        t.daddr.packed,
        t.saddr.packed,
        t.dport.to_bytes(2, "big"),
        t.sport.to_bytes(2, "big"),
        t.nexthdr,
        t.flags,
    )


def decode_key(raw: bytes) -> Tuple:
    daddr, saddr, dport, sport, nexthdr, flags = KEY.struct.unpack(raw)
    return Tuple(
        daddr=ipaddress.IPv4Address(daddr),
        saddr=ipaddress.IPv4Address(saddr),
        dport=int.from_bytes(dport, "big"),
        sport=int.from_bytes(sport, "big"),
        nexthdr=nexthdr,
        flags=flags,
    )


def encode_value(e: Entry) -> bytes:
    return VALUE.struct.pack(
        0,
        e.backend_id,
        e.packets,
        e.bytes,
        e.lifetime,
        int(e.flags),
        e.rev_nat_index,
        0,
        e.tx_flags_seen,
        e.rx_flags_seen,
        e.src_sec_id,
        0,
        0,
    )


def decode_value(raw: bytes) -> Entry:
    v = dict(zip(VALUE.members, VALUE.struct.unpack(raw), strict=True))
    return Entry(
        packets=v["packets"],
        bytes=v["bytes"],
        lifetime=v["lifetime"],
        flags=EntryFlag(v["flags"]),
        tx_flags_seen=v["tx_flags_seen"],
        rx_flags_seen=v["rx_flags_seen"],
        src_sec_id=v["src_sec_id"],
        rev_nat_index=v["rev_nat_index"],
        backend_id=v["backend_id"],
    )


class CTMap:
    """One of the two conntrack maps (``TCP_NAME`` or ``ANY_NAME``), by fd."""

    def __init__(self, fd: int, name: str = TCP_NAME) -> None:
        self.raw = RawMap(fd, KEY, VALUE, name=name)

    def get(self, t: Tuple) -> Entry | None:
        values = self.raw.lookup(encode_key(t))
        return decode_value(values[0]) if values else None

    def upsert(self, t: Tuple, e: Entry) -> None:
        self.raw.update(encode_key(t), encode_value(e))

    def delete(self, t: Tuple) -> bool:
        return self.raw.delete(encode_key(t))

    def flush_address(self, ip: ipaddress.IPv4Address) -> int:
        """Delete every entry from or to ``ip`` (a deleted endpoint's, as upstream scrubs its
        IPs from the conntrack table: a later holder of the IP must not inherit its state);
        returns how many."""
        packed = ip.packed
        stale = [key for key in self.raw.iter_keys() if packed in (key[0:4], key[4:8])]
        return sum(self.raw.delete(key) for key in stale)

    def dump(self) -> dict[Tuple, Entry]:
        out = {}
        for key in self.raw.iter_keys():
            values = self.raw.lookup(key)
            if values:
                out[decode_key(key)] = decode_value(values[0])
        return out
