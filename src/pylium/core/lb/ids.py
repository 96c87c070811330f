"""L2: stable numeric IDs for frontends (rev-NAT / service IDs) and backends.

An ID stays with its key (the frontend's or backend's ``L3n4Addr`` string) as long as the key
exists, so conntrack entries and Maglev tables keep meaning the same thing. Like upstream's
ID allocators, new IDs come from a cursor that moves forward and wraps, so a just-released ID
is not handed out again at once (a stale conntrack entry would point at the wrong backend).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pylium.base.errors import AllocationError

MAX_SERVICE_ID = 0xFFFF
"""rev_nat_index is a u16 in ``lb4_service``; 0 means none."""
MAX_BACKEND_ID = 0xFFFFFFFF


@dataclass
class IDAllocator:
    """Keys -> IDs in ``1..maximum``."""

    pool: str
    maximum: int
    ids: dict[str, int] = field(default_factory=dict)
    next_id: int = 1
    _holders: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    """ID -> key, kept with ``ids`` so that allocation does not rescan every ID."""

    def __post_init__(self) -> None:
        self._holders = {v: k for k, v in self.ids.items()}

    def acquire(self, key: str) -> int:
        """The key's ID, allocating the next free one if it has none."""
        if key in self.ids:
            return self.ids[key]
        if len(self._holders) >= self.maximum:
            raise AllocationError(self.pool, f"no free ID left for {key} (all {self.maximum})")
        candidate = self.next_id
        while candidate in self._holders:
            candidate = candidate % self.maximum + 1
        self.ids[key] = candidate
        self._holders[candidate] = key
        self.next_id = candidate % self.maximum + 1
        return candidate

    def restore(self, key: str, value: int) -> None:
        """Take a known ID (after a restart, from the pinned maps)."""
        if not 1 <= value <= self.maximum:
            raise AllocationError(self.pool, f"ID {value} for {key} is outside 1..{self.maximum}")
        holder = self._holders.get(value)
        if holder is not None and holder != key:
            raise AllocationError(self.pool, f"ID {value} for {key} is held by {holder}")
        old = self.ids.get(key)
        if old is not None and old != value:
            del self._holders[old]
        self.ids[key] = value
        self._holders[value] = key

    def release(self, key: str) -> None:
        """Give ``key``'s ID back (nothing when it has none)."""
        value = self.ids.pop(key, None)
        if value is not None:
            del self._holders[value]

    def retain(self, keys: Iterable[str]) -> None:
        """Release every key not in ``keys``."""
        keep = set(keys)
        for key in [k for k in self.ids if k not in keep]:
            del self._holders[self.ids.pop(key)]

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "max": self.maximum, "next": self.next_id, "ids": dict(self.ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IDAllocator:
        alloc = cls(str(data["pool"]), int(data["max"]), next_id=int(data.get("next", 1)))
        for key, value in (data.get("ids") or {}).items():
            alloc.restore(str(key), int(value))
        return alloc


def service_ids() -> IDAllocator:
    return IDAllocator("service IDs", MAX_SERVICE_ID)


def backend_ids() -> IDAllocator:
    return IDAllocator("backend IDs", MAX_BACKEND_ID)
