"""L5: the agent's conntrack garbage collector (upstream's ``pkg/maps/ctmap/gc``).

A run deletes the conntrack entries whose lifetime has passed (both maps) and then the
NodePort NAT entries no live conntrack entry owns (:func:`pylium.core.conntrack.nat_orphans`),
so a finished connection's SNAT port and reverse translations go with it instead of waiting
for LRU eviction. The first run is at start; then every ``conntrack-gc-interval``, or, when
that is 0, at an interval adapted to how much of a map each run deleted
(:func:`pylium.core.conntrack.next_gc_interval`).

The NAT map is read before the conntrack maps: the datapath creates a connection's
conntrack entry before its NAT entries, so every NAT entry read has its owner in the later
read of the conntrack maps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pylium.adapters.maps import ct, nat, pressure
from pylium.base.errors import PyliumError
from pylium.core.conntrack import expired, nat_orphans, next_gc_interval

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GCRun:
    """What one run deleted: per conntrack map, and orphan NAT entries."""

    ct_deleted: dict[str, int]
    nat_deleted: int
    max_delete_ratio: float


class ConntrackGC:
    def __init__(
        self,
        ct_maps: list[ct.CTMap],
        nat_map: nat.NATMap,
        *,
        interval: float = 0.0,
        max_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ct_maps = ct_maps
        self.nat_map = nat_map
        self.interval = interval
        self.max_interval = max_interval
        self.clock = clock  # the datapath's clock: bpf_ktime_get_ns is CLOCK_MONOTONIC
        self.sizes = {m.raw.name: pressure.map_info(m.raw.fd)[2] for m in ct_maps}
        self.runs = 0

    def run_once(self) -> GCRun:
        now = int(self.clock())
        translations = self.nat_map.dump()
        alive: set[ct.Tuple] = set()
        deleted: dict[str, int] = {}
        for m in self.ct_maps:
            count = 0
            for key, entry in m.dump().items():
                if expired(entry.lifetime, now):
                    count += m.delete(key)
                else:
                    alive.add(key)
            deleted[m.raw.name] = count
        orphans = nat_orphans(translations, alive, now)
        nat_deleted = sum(self.nat_map.delete(key) for key in orphans)
        self.runs += 1
        ratio = max((n / self.sizes[name] for name, n in deleted.items()), default=0.0)
        return GCRun(deleted, nat_deleted, ratio)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set."""
        expected = 0.0
        previous: float | None = None
        while not stop.is_set():
            started = self.clock()
            ratio = 0.0
            try:
                result = self.run_once()
                ratio = result.max_delete_ratio
                if result.nat_deleted or any(result.ct_deleted.values()):
                    log.info(
                        "conntrack GC: deleted %s expired conntrack entries, %d orphan NAT entries",
                        result.ct_deleted,
                        result.nat_deleted,
                    )
            except PyliumError as err:
                log.warning("conntrack GC: %s", err)
            actual = started - previous if previous is not None else 0.0
            previous = started
            expected = next_gc_interval(
                expected, actual, ratio, fixed=self.interval, max_interval=self.max_interval
            )
            stop.wait(expected)
