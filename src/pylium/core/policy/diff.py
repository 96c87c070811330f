"""L2: the difference between two map states, so that an endpoint's map is updated in place.

Only what changes is written: keys that are new or whose verdict changed are upserted, keys
that disappeared are deleted, and everything else (the entries established flows use) is
left alone. Changes of ``derived_from`` alone do not touch the datapath unless asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey


@dataclass(frozen=True, slots=True)
class MapStateDiff:
    adds: Mapping[PolicyKey, MapEntry]
    """Keys to write (new, or with a changed value)."""
    removes: tuple[PolicyKey, ...]
    """Keys to delete, sorted."""

    @property
    def empty(self) -> bool:
        return not self.adds and not self.removes

    def apply(self, state: MapState) -> MapState:
        entries = {k: v for k, v in state.entries.items() if k not in set(self.removes)}
        entries.update(self.adds)
        return MapState(entries)


def diff(old: MapState, new: MapState, *, with_origins: bool = False) -> MapStateDiff:
    """What turns ``old`` into ``new``; ``with_origins`` also counts changed origins."""

    def same(a: MapEntry, b: MapEntry) -> bool:
        return a == b if with_origins else a.deny == b.deny

    adds = {
        k: v for k, v in new.entries.items() if k not in old.entries or not same(old.entries[k], v)
    }
    removes = tuple(sorted(k for k in old.entries if k not in new.entries))
    return MapStateDiff(adds, removes)
