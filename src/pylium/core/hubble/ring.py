"""L2: the per-node flow ring (Hubble's ``hubble-event-buffer-capacity``, default 4095): the last
N flows, with how many were ever seen and how many the datapath lost before they reached it.
Readers take the last ``number`` (or the first), between ``since`` and ``until``, through
filters, and can follow new flows. Thread-safe; no I/O."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pylium.core.hubble.filters import FlowFilter, passes
from pylium.core.hubble.flow import Flow

DEFAULT_CAPACITY = 4095


def check_capacity(capacity: int) -> int:
    """Upstream accepts 2^n - 1, at most 65535."""
    if capacity < 1 or capacity > 65535 or (capacity + 1) & capacity:
        raise ValueError(
            f"hubble-event-buffer-capacity {capacity}: must be 2^n-1 (1, 3, 7, ... 65535)"
        )
    return capacity


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    number: int = 0
    """How many (0: all the ring holds)."""
    first: bool = False
    """The oldest ``number`` instead of the newest."""
    since_ns: int = 0
    until_ns: int = 0
    allow: tuple[FlowFilter, ...] = ()
    deny: tuple[FlowFilter, ...] = ()

    def wants(self, flow: Flow) -> bool:
        if self.since_ns and flow.time_ns < self.since_ns:
            return False
        if self.until_ns and flow.time_ns > self.until_ns:
            return False
        return passes(flow, self.allow, self.deny)


class FlowRing:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = check_capacity(capacity)
        self._flows: deque[tuple[int, Flow]] = deque(maxlen=capacity)
        self._cond = threading.Condition()
        self.seen = 0
        self.lost = 0
        """Events the datapath could not hand over (its ring buffer was full)."""

    def add(self, flows: Sequence[Flow]) -> None:
        with self._cond:
            for flow in flows:
                self.seen += 1
                self._flows.append((self.seen, flow))
            self._cond.notify_all()

    def add_lost(self, count: int) -> None:
        with self._cond:
            self.lost += count

    def __len__(self) -> int:
        return len(self._flows)

    def read(self, query: Query) -> tuple[list[Flow], int]:
        """Matching flows (oldest first) and the sequence number to follow from."""
        with self._cond:
            items = list(self._flows)
            last = self.seen
        matching = [f for _, f in items if query.wants(f)]
        if query.number:
            matching = matching[: query.number] if query.first else matching[-query.number :]
        return matching, last

    def follow(
        self, query: Query, after: int, stop: threading.Event, poll: float = 0.5
    ) -> Iterator[Flow]:
        """Flows added after sequence number ``after``, as they come, until ``stop``."""
        while not stop.is_set():
            with self._cond:
                if self.seen <= after:
                    self._cond.wait(poll)
                fresh = [(seq, f) for seq, f in self._flows if seq > after]
                after = max(after, self.seen)
            for _, flow in fresh:
                if query.wants(flow):
                    yield flow

    def after(self, query: Query, seq: int, timeout: float) -> tuple[list[Flow], int]:
        """Matching flows added after sequence number ``seq`` (waiting up to ``timeout`` for
        the first one), and the sequence number to continue from: a long poll."""
        with self._cond:
            if self.seen <= seq and timeout > 0:
                self._cond.wait(timeout)
            fresh = [f for s, f in self._flows if s > seq]
            last = self.seen
        return [f for f in fresh if query.wants(f)], last
