"""L3: forward and drop counters (``pylium_metrics``, per-CPU; Cilium's ``cilium_metrics``).

C (bpf/lib/maps.h)::

    struct metrics_key { __u8 reason; __u8 dir; __u16 line; __u8 file; __u8 pad[3]; };
    struct metrics_value { __u64 count; __u64 bytes; };

reason 0 is "forwarded"; others are Cilium's drop reasons. dir: 1 ingress, 2 egress.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylium.adapters.maps.base import Layout, RawMap

NAME = "pylium_metrics"
KEY = Layout("metrics_key", "=BBHB3s", ("reason", "dir", "line", "file", "pad"))
VALUE = Layout("metrics_value", "=QQ", ("count", "bytes"))


@dataclass(frozen=True, slots=True)
class Counter:
    count: int
    bytes: int


class MetricsMap:
    def __init__(self, fd: int) -> None:
        self.raw = RawMap(fd, KEY, VALUE, name=NAME, percpu=True)

    def totals(self) -> dict[tuple[int, int], Counter]:
        """(reason, direction) -> counters summed over CPUs."""
        out: dict[tuple[int, int], Counter] = {}
        for key in self.raw.iter_keys():
            reason, direction, _, _, _ = KEY.struct.unpack(key)
            values = self.raw.lookup(key) or []
            count = sum(VALUE.struct.unpack(v)[0] for v in values)
            size = sum(VALUE.struct.unpack(v)[1] for v in values)
            prev = out.get((reason, direction), Counter(0, 0))
            out[(reason, direction)] = Counter(prev.count + count, prev.bytes + size)
        return out
