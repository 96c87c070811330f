"""L3: trace and drop events from the ring buffer (``pylium_events``).

C (bpf/lib/events.h)::

    struct flow_event { __u64 ts; __u8 type; __u8 reason; __u8 dir; __u8 proto; __u32 ifindex;
                        __u32 src_identity; __u32 dst_identity; __u32 saddr; __u32 daddr;
                        __u16 sport; __u16 dport; __u32 len; };
"""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass
from typing import Any

from pylium.adapters.bpf import libbpf
from pylium.adapters.maps.base import Layout
from pylium.base.errors import DatapathError

NAME = "pylium_events"
EVENT = Layout(
    "flow_event",
    "=QBBBBIII4s4sHHI",
    (
        "ts",
        "type",
        "reason",
        "dir",
        "proto",
        "ifindex",
        "src_identity",
        "dst_identity",
        "saddr",
        "daddr",
        "sport",
        "dport",
        "len",
    ),
)
TYPE_DROP = 1
TYPE_TRACE = 4


@dataclass(frozen=True, slots=True)
class FlowEvent:
    ts: int
    type: int
    reason: int
    direction: int
    proto: int
    ifindex: int
    src_identity: int
    dst_identity: int
    saddr: ipaddress.IPv4Address
    daddr: ipaddress.IPv4Address
    sport: int
    dport: int
    length: int


def decode(raw: bytes) -> FlowEvent:
    ts, typ, reason, direction, proto, ifindex, src, dst, saddr, daddr, sport, dport, length = (
        EVENT.struct.unpack(raw[: EVENT.size])
    )
    return FlowEvent(
        ts,
        typ,
        reason,
        direction,
        proto,
        ifindex,
        src,
        dst,
        ipaddress.IPv4Address(saddr),
        ipaddress.IPv4Address(daddr),
        sport,
        dport,
        length,
    )


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
            raise DatapathError(NAME, "open ring buffer", f"fd {fd}")

    def poll(self, timeout_ms: int = 0) -> list[FlowEvent]:
        libbpf.check(libbpf.lib().ring_buffer__poll(self._rb, timeout_ms), NAME, "poll")
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        if self._rb:
            libbpf.lib().ring_buffer__free(self._rb)
            self._rb = None
