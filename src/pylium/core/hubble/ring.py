"""L2: the per-node flow ring (Hubble's ``hubble-event-buffer-capacity``, default 4095): the last
N flows, with how many were ever seen and how many the datapath lost before they reached it.
Readers take the last ``number`` (or the first), between ``since`` and ``until``, through
filters, and can follow new flows. Batches are kept as given and only sliced when read, so a
batch that decodes lazily is decoded only as far as a reader looks. Thread-safe; no I/O."""

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

    @property
    def unfiltered(self) -> bool:
        """Every flow passes (only ``number`` and ``first`` choose)."""
        return not (self.since_ns or self.until_ns or self.allow or self.deny)

    def wants(self, flow: Flow) -> bool:
        if self.since_ns and flow.time_ns < self.since_ns:
            return False
        if self.until_ns and flow.time_ns > self.until_ns:
            return False
        return passes(flow, self.allow, self.deny)


class FlowRing:
    """The flows in batches as added (any sequence of flows: a list, or the agent's batches
    that decode each record only when it is read), trimmed to the last ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = check_capacity(capacity)
        self._batches: deque[tuple[int, Sequence[Flow]]] = deque()
        """(sequence number of the batch's first flow, its flows), oldest first."""
        self._skip = 0
        """How many flows of the oldest batch have been pushed out."""
        self._held = 0
        self._cond = threading.Condition()
        self.seen = 0
        self.lost = 0
        """Events the datapath could not hand over (its ring buffer was full)."""

    def add(self, flows: Sequence[Flow]) -> None:
        with self._cond:
            if flows:
                self._batches.append((self.seen + 1, flows))
                self.seen += len(flows)
                self._held += len(flows)
                self._trim()
            self._cond.notify_all()

    def _trim(self) -> None:
        while self._held > self.capacity:
            excess = self._held - self.capacity
            left = len(self._batches[0][1]) - self._skip
            if left <= excess:
                self._batches.popleft()
                self._skip = 0
                self._held -= left
            else:
                self._skip += excess
                self._held -= excess

    def add_lost(self, count: int) -> None:
        with self._cond:
            self.lost += count

    def __len__(self) -> int:
        return self._held

    def _after(self, seq: int) -> list[_Part]:
        """Where the held flows with sequence numbers above ``seq`` are (oldest first), for
        reading outside the lock: nothing is decoded here. Called with the lock held."""
        out: list[_Part] = []
        for i in range(len(self._batches) - 1, -1, -1):
            first, flows = self._batches[i]
            if first + len(flows) - 1 <= seq:
                break
            out.append((flows, max(self._skip if i == 0 else 0, seq + 1 - first), len(flows)))
        out.reverse()
        return out

    def read(self, query: Query) -> tuple[list[Flow], int]:
        """Matching flows (oldest first) and the sequence number to follow from."""
        with self._cond:
            parts = self._after(0)
            last = self.seen
        if query.number and query.unfiltered:  # decode only the flows asked for
            parts = _take(parts, query.number, query.first)
        matching = [f for f in _flows(parts) if query.wants(f)]
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
                fresh = self._after(after)
                after = max(after, self.seen)
            for flow in _flows(fresh):
                if query.wants(flow):
                    yield flow

    def after(self, query: Query, seq: int, timeout: float) -> tuple[list[Flow], int]:
        """Matching flows added after sequence number ``seq`` (waiting up to ``timeout`` for
        the first one), and the sequence number to continue from: a long poll."""
        with self._cond:
            if self.seen <= seq and timeout > 0:
                self._cond.wait(timeout)
            fresh = self._after(seq)
            last = self.seen
        return [f for f in _flows(fresh) if query.wants(f)], last


_Part = tuple[Sequence[Flow], int, int]
"""A batch and the range of it (start, stop) that a read covers."""


def _flows(parts: list[_Part]) -> Iterator[Flow]:
    for flows, lo, hi in parts:
        yield from flows if lo == 0 and hi == len(flows) else flows[lo:hi]


def _take(parts: list[_Part], number: int, first: bool) -> list[_Part]:
    """The first (or last) ``number`` flows of ``parts``."""
    out: list[_Part] = []
    for flows, lo, hi in parts if first else reversed(parts):
        if number <= 0:
            break
        if hi - lo > number:
            lo, hi = (lo, lo + number) if first else (hi - number, hi)
        out.append((flows, lo, hi))
        number -= hi - lo
    return out if first else out[::-1]
