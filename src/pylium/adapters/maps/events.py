"""L3: trace, drop and policy-verdict events from the ring buffer (``pylium_events``), drained
raw (:class:`Records`, one copy per batch) and decoded into :class:`FlowEvent` on demand; plus
the per-CPU count of events lost to a full ring (``pylium_events_lost``).

C (bpf/lib/events.h)::

    struct flow_event { __u64 ts; __u8 type; __u8 reason; __u8 obs_point; __u8 dir;
                        __u8 proto; __u8 tcp_flags; __u16 source; __u32 ifindex;
                        __u32 src_identity; __u32 dst_identity; __u32 saddr; __u32 daddr;
                        __u16 sport; __u16 dport; __u32 len; __u32 flags; };

``type`` is Cilium's monitor message type (1 drop, 4 trace, 5 policy verdict). For a drop
``reason`` is Cilium's drop reason; for a trace it is the conntrack state (0 new,
1 established, 2 reply, 3 related: an ICMP error about a tracked connection) and
``obs_point`` where the packet went (Cilium's TRACE_TO_* numbers).
For a policy verdict (new connections and denials, in the direction of ``dir``) ``reason`` is
0 when allowed, else the drop reason that applied (133 no allow matched, 181 a deny matched),
``obs_point`` the match type (Cilium's POLICY_MATCH_* numbers) and ``flags`` bit 0 says the
denial was let through by policy audit mode (Hubble's AUDIT verdict).
"""

from __future__ import annotations

import functools
import ipaddress
import mmap
import select
import struct
import sys
from dataclasses import dataclass

from pylium.adapters.maps import pressure
from pylium.adapters.maps.base import Layout, RawMap
from pylium.base.errors import DatapathError

NAME = "pylium_events"
LOST_NAME = "pylium_events_lost"
EVENT = Layout(
    "flow_event",
    "=QBBBBBBHIII4s4sHHII",
    (
        "ts",
        "type",
        "reason",
        "obs_point",
        "dir",
        "proto",
        "tcp_flags",
        "source",
        "ifindex",
        "src_identity",
        "dst_identity",
        "saddr",
        "daddr",
        "sport",
        "dport",
        "len",
        "flags",
    ),
)
LOST_KEY = Layout("__u32", "=I", ("index",))
LOST_VALUE = Layout("__u64", "=Q", ("lost",))
TYPE_DROP = 1
TYPE_TRACE = 4
TYPE_POLICY_VERDICT = 5
FLAG_AUDITED = 1
# policy-verdict match types (Cilium's POLICY_MATCH_*)
MATCH_NONE = 0
MATCH_L3_ONLY = 1
MATCH_L3_L4 = 2
MATCH_L4_ONLY = 3
MATCH_ALL = 4
MATCH_L3_PROTO = 5
MATCH_PROTO_ONLY = 6
TRACE_TO_LXC = 0
TRACE_TO_HOST = 2
TRACE_TO_STACK = 3
TRACE_TO_OVERLAY = 4
TRACE_TO_NETWORK = 11
CT_NEW = 0
CT_ESTABLISHED = 1
CT_REPLY = 2
CT_RELATED = 3


@dataclass(slots=True, kw_only=True)  # not frozen: a frozen init costs a setattr per field
class FlowEvent:
    ts: int
    type: int
    reason: int
    obs_point: int
    direction: int
    proto: int
    tcp_flags: int
    source: int
    ifindex: int
    src_identity: int
    dst_identity: int
    saddr: ipaddress.IPv4Address
    daddr: ipaddress.IPv4Address
    sport: int
    dport: int
    length: int
    flags: int = 0

    @property
    def audited(self) -> bool:
        """A policy verdict whose denial audit mode let through."""
        return bool(self.flags & FLAG_AUDITED)


_EVENT = EVENT.struct
_SIZE = EVENT.size
HEADER = 8
"""The kernel's header before each ring-buffer record: ``__u32 len`` (with the busy and
discard bits), ``__u32 pg_off``."""
RECORD = (HEADER + _SIZE + 7) & ~7
"""Bytes per record in the ring buffer and in :class:`Records` (header, event, 8-aligned)."""
_BUSY = 1 << 31
_DISCARD = 1 << 30
_AT = {name: HEADER + offset for name, (offset, _) in EVENT.offsets().items()}
_TYPE_AT = _AT["type"]
_IDENTITY_WORDS = (_AT["src_identity"] // 4, _AT["dst_identity"] // 4)
_ADDRESS_WORDS = (_AT["saddr"] // 4, _AT["daddr"] // 4)
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
MAP_TYPE_RINGBUF = 27


def decode(raw: bytes) -> FlowEvent:
    return _decode_from(raw, 0)


def _decode_from(buf: bytes, offset: int) -> FlowEvent:
    (
        ts,
        type_,
        reason,
        obs_point,
        dir_,
        proto,
        tcp_flags,
        source,
        ifindex,
        src_identity,
        dst_identity,
        saddr,
        daddr,
        sport,
        dport,
        length,
        flags,
    ) = _EVENT.unpack_from(buf, offset)
    return FlowEvent(
        ts=ts,
        type=type_,
        reason=reason,
        obs_point=obs_point,
        direction=dir_,
        proto=proto,
        tcp_flags=tcp_flags,
        source=source,
        ifindex=ifindex,
        src_identity=src_identity,
        dst_identity=dst_identity,
        saddr=_address(saddr),
        daddr=_address(daddr),
        sport=sport,
        dport=dport,
        length=length,
        flags=flags,
    )


@functools.lru_cache(maxsize=65536)
def _address(packed: bytes) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(packed)


class Records:
    """Events as drained, still raw: ``len(self)`` records of :data:`RECORD` bytes (header,
    then ``struct flow_event``), each decoded only when asked for. The whole-batch views
    (:meth:`types`, :meth:`identities`) are byte slices, no per-event Python."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data) // RECORD

    def event(self, index: int) -> FlowEvent:
        return _decode_from(self.data, index * RECORD + HEADER)

    def types(self) -> bytes:
        """Each record's event type, one byte per record."""
        return self.data[_TYPE_AT::RECORD]

    def identities(self) -> set[int]:
        """The security identities the records name (source or destination)."""
        return self._words(_IDENTITY_WORDS)

    def addresses(self) -> set[ipaddress.IPv4Address]:
        """The addresses the records name (source or destination)."""
        return {_address(w.to_bytes(4, sys.byteorder)) for w in self._words(_ADDRESS_WORDS)}

    def _words(self, at: tuple[int, int]) -> set[int]:
        words = memoryview(self.data).cast("I")
        return set(words[at[0] :: RECORD // 4]) | set(words[at[1] :: RECORD // 4])


class EventReader:
    """The ring buffer's one consumer, through its memory mapping as libbpf's consumer reads it
    but without a callback per event: :meth:`drain` copies every committed record in one
    slice (the kernel maps the data area twice back to back, so a record that wraps around
    reads straight) and moves the consumer position past them; :meth:`poll` also decodes."""

    def __init__(self, fd: int) -> None:
        kind, _, size = pressure.map_info(fd)
        if kind != MAP_TYPE_RINGBUF:
            raise DatapathError(NAME, "open ring buffer", f"map fd {fd} is not a ring buffer")
        page = mmap.PAGESIZE
        try:
            self._consumer = mmap.mmap(fd, page, offset=0)
            self._ring = mmap.mmap(fd, page + 2 * size, prot=mmap.PROT_READ, offset=page)
            self._epoll = select.epoll()
            self._epoll.register(fd, select.EPOLLIN)
        except OSError as err:
            raise DatapathError(NAME, "open ring buffer", str(err)) from err
        self._page, self._mask = page, size - 1
        self._closed = False

    def wait(self, timeout_ms: int) -> bool:
        """Until there is something to read, at most ``timeout_ms``: whether there is."""
        self._check()
        return bool(self._epoll.poll(timeout_ms / 1000))

    def drain(self) -> Records:
        self._check()
        cons = _U64.unpack_from(self._consumer, 0)[0]
        prod = _U64.unpack_from(self._ring, 0)[0]
        if prod == cons:
            return Records()
        start = self._page + (cons & self._mask)
        end = start + prod - cons
        count = (prod - cons) // RECORD
        ring = self._ring
        # Every record a committed flow_event (what the datapath writes): headers checked
        # before the data is copied, so no record is read before its commit.
        if (
            (prod - cons) % RECORD == 0
            and ring[start + 3 : end : RECORD].count(0) == count
            and ring[start + 1 : end : RECORD].count(0) == count
            and ring[start + 2 : end : RECORD].count(0) == count
            and ring[start:end:RECORD].count(_SIZE) == count
        ):
            data, cons = ring[start:end], prod
        else:
            data, cons = self._walk(cons, prod)
        _U64.pack_into(self._consumer, 0, cons)
        return Records(data)

    def _walk(self, cons: int, prod: int) -> tuple[bytes, int]:
        """Record by record up to the first one still being written (busy), skipping the
        discarded; each kept one cut or padded to :data:`RECORD` bytes."""
        out = bytearray()
        while cons < prod:
            at = self._page + (cons & self._mask)
            header = _U32.unpack_from(self._ring, at)[0]
            if header & _BUSY:
                break
            length = header & ~(_BUSY | _DISCARD)
            if not header & _DISCARD and length >= _SIZE:
                out += self._ring[at : at + HEADER + _SIZE].ljust(RECORD, b"\0")
            cons += (HEADER + length + 7) & ~7
        return bytes(out), cons

    def poll(self, timeout_ms: int = 0) -> list[FlowEvent]:
        """The events read, decoded, after waiting up to ``timeout_ms`` for the first."""
        records = self.drain()
        if not len(records) and timeout_ms:
            self.wait(timeout_ms)
            records = self.drain()
        return [records.event(i) for i in range(len(records))]

    def _check(self) -> None:
        if self._closed:
            raise DatapathError(NAME, "poll", "reader closed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._epoll.close()
            self._consumer.close()
            self._ring.close()


def lost(fd: int) -> int:
    """Events dropped because the ring buffer was full, summed over CPUs."""
    raw = RawMap(fd, LOST_KEY, LOST_VALUE, name=LOST_NAME, percpu=True)
    values = raw.lookup(struct.pack("=I", 0)) or []
    return sum(struct.unpack("=Q", v)[0] for v in values)
