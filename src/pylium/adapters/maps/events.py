"""L3: trace, drop and policy-verdict events from the ring buffer (``pylium_events``), decoded into
:class:`FlowEvent`; plus the per-CPU count of events lost to a full ring (``pylium_events_lost``).

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

import ctypes
import functools
import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from pylium.adapters.bpf import libbpf
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


@dataclass(frozen=True, slots=True, kw_only=True)
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


def decode(raw: bytes) -> FlowEvent:
    # Hot path (every event the datapath emits): positional unpacking, no intermediate dict.
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
    ) = _EVENT.unpack(raw[:_SIZE])
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


class EventReader:
    """Drains the ring buffer through libbpf; ``poll`` returns the events read."""

    def __init__(self, fd: int) -> None:
        self._pending: list[FlowEvent] = []

        def on_event(ctx: Any, data: Any, size: int) -> int:
            self._pending.append(decode(ctypes.string_at(data, size)))
            return 0

        self._callback = libbpf.RingBufferCallback(on_event)  # keep referenced (libbpf calls it)
        self._rb = libbpf.lib().ring_buffer__new(
            fd, ctypes.cast(self._callback, ctypes.c_void_p), None, None
        )
        if not self._rb:
            libbpf.check(-(ctypes.get_errno() or 22), NAME, "open ring buffer")

    def poll(self, timeout_ms: int = 0) -> list[FlowEvent]:
        if not self._rb:
            raise DatapathError(NAME, "poll", "reader closed")
        libbpf.check(libbpf.lib().ring_buffer__poll(self._rb, timeout_ms), NAME, "poll")
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        if self._rb:
            libbpf.lib().ring_buffer__free(self._rb)
            self._rb = None


def lost(fd: int) -> int:
    """Events dropped because the ring buffer was full, summed over CPUs."""
    raw = RawMap(fd, LOST_KEY, LOST_VALUE, name=LOST_NAME, percpu=True)
    values = raw.lookup(struct.pack("=I", 0)) or []
    return sum(struct.unpack("=Q", v)[0] for v in values)
