"""L2: a resolved policy as policy-map entries, and the datapath's lookup over them.

A key is (direction, remote identity (0 = any), protocol (0 = any), port, port prefix
length): ports are matched as an LPM prefix like upstream's policy map, so a port range is
split into aligned prefixes (8080-8095 is one /12 prefix). The whole key is a 24-bit LPM over
protocol (8 bits) then port (16 bits); protocol 0 is the zero-length prefix.

Lookup contract (mirrored by the datapath): for a packet (direction, identity, protocol,
port), the entry with the longest L4 prefix among those keyed by the packet's identity or by
identity 0 wins; at equal length the identity-specific entry wins.

Deny beats allow whatever the specificity. The entries are built so that the lookup above
gives that answer (upstream ``denyPreferredInsert``):

- an allow whose L4 lies inside a deny's L4, for the same identity or a deny of identity 0,
  is dropped;
- an allow of identity 0 whose L4 lies inside a deny of identity X gets a deny twin
  (X, allow's L4), so that X's packets find a deny at least as long as the allow.

The result does not depend on the order of rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from pylium.core.policy.peers import (
    MAX_PORT,
    Contribution,
    Direction,
    L4Match,
    Origin,
    port_proto,
)
from pylium.core.policy.resolve import ResolvedPolicy
from pylium.core.policy.selectorcache import SelectorCache
from pylium.model.policy import LabelSelector

PORT_BITS = 16
PROTO_BITS = 8


@dataclass(frozen=True, slots=True, order=True)
class PolicyKey:
    direction: Direction
    identity: int
    proto: int = 0
    port: int = 0
    prefix_len: int = 0
    """Port prefix bits, 0-16 (0 when ``proto`` is 0)."""

    @property
    def lpm_len(self) -> int:
        return 0 if self.proto == 0 else PROTO_BITS + self.prefix_len

    @property
    def port_range(self) -> tuple[int, int]:
        span = 1 << (PORT_BITS - self.prefix_len)
        return self.port, self.port + span - 1

    def l4_contains(self, other: PolicyKey) -> bool:
        """Does this key's L4 prefix contain the other's (identities not compared)?"""
        if self.proto == 0:
            return True
        if self.proto != other.proto or self.prefix_len > other.prefix_len:
            return False
        shift = PORT_BITS - self.prefix_len
        return other.port >> shift == self.port >> shift

    def __str__(self) -> str:
        return f"{self.direction} {self.identity} {port_proto(self.proto, *self.port_range)}"


@dataclass(frozen=True, slots=True)
class MapEntry:
    deny: bool
    derived_from: tuple[Origin, ...] = ()

    @property
    def verdict(self) -> str:
        return "deny" if self.deny else "allow"


def port_prefixes(start: int, end: int) -> list[tuple[int, int]]:
    """Split an inclusive port range into aligned (port, prefix length) blocks."""
    out: list[tuple[int, int]] = []
    while start <= end:
        size = (start & -start) or (MAX_PORT + 1)
        while start + size - 1 > end:
            size >>= 1
        out.append((start, PORT_BITS - size.bit_length() + 1))
        start += size
    return out


def l4_keys(direction: Direction, identity: int, l4: L4Match) -> Iterator[PolicyKey]:
    if l4.proto == 0:
        yield PolicyKey(direction, identity)
        return
    for port, plen in port_prefixes(l4.start, l4.end):
        yield PolicyKey(direction, identity, l4.proto, port, plen)


@dataclass(frozen=True, slots=True)
class MapState:
    entries: Mapping[PolicyKey, MapEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(
        self, direction: Direction, identity: int, proto: int, port: int
    ) -> tuple[PolicyKey, MapEntry] | None:
        """The entry the datapath would find for a packet (see the module's contract)."""
        candidates = [
            PolicyKey(direction, 0, proto, port >> (PORT_BITS - p) << (PORT_BITS - p), p)
            for p in range(PORT_BITS, -1, -1)
        ]
        candidates.append(PolicyKey(direction, 0))
        for key in candidates:
            for ident in (identity, 0) if identity else (0,):
                k = PolicyKey(key.direction, ident, key.proto, key.port, key.prefix_len)
                entry = self.entries.get(k)
                if entry is not None:
                    return k, entry
        return None

    def render(self) -> list[str]:
        """One line per entry, sorted: ``Allow Ingress 10001 80/TCP <- origins``."""
        lines = []
        for key, entry in sorted(self.entries.items()):
            origins = "; ".join(str(o) for o in entry.derived_from)
            lines.append(
                f"{entry.verdict.capitalize():5} {key.direction.name.capitalize():7} "
                f"{key.identity:<8} {port_proto(key.proto, *key.port_range):16} <- {origins}"
            )
        return lines


def _identities(c: Contribution, cache: SelectorCache) -> frozenset[int]:
    if isinstance(c.selector, LabelSelector) and c.selector.is_wildcard:
        return frozenset({0})
    return cache.select(c.selector)


def compute_map_state(resolved: ResolvedPolicy, cache: SelectorCache) -> MapState:
    """Map entries for both directions of a resolved endpoint policy."""
    allows: dict[PolicyKey, set[Origin]] = {}
    denies: dict[PolicyKey, set[Origin]] = {}
    for direction in Direction:
        for c in resolved.direction(direction).contributions:
            target = denies if c.deny else allows
            for ident in _identities(c, cache):
                for key in l4_keys(direction, ident, c.l4):
                    target.setdefault(key, set()).add(c.origin)
    return MapState(deny_preferred(allows, denies))


def deny_preferred(
    allows: Mapping[PolicyKey, set[Origin]], denies: Mapping[PolicyKey, set[Origin]]
) -> dict[PolicyKey, MapEntry]:
    """Merge allow and deny keys so that the LPM lookup lets every deny win."""
    by_identity: dict[tuple[Direction, int], list[PolicyKey]] = {}
    for key in denies:
        by_identity.setdefault((key.direction, key.identity), []).append(key)
    out_denies = {k: set(v) for k, v in denies.items()}
    out_allows: dict[PolicyKey, set[Origin]] = {}
    for key, origins in allows.items():
        covering = by_identity.get((key.direction, key.identity), []) + (
            by_identity.get((key.direction, 0), []) if key.identity else []
        )
        if any(d.l4_contains(key) for d in covering):
            continue
        out_allows[key] = origins
        if key.identity != 0:
            continue
        for (direction, ident), keys in by_identity.items():
            if direction != key.direction or ident == 0:
                continue
            for d in keys:
                if d.l4_contains(key):
                    twin = PolicyKey(direction, ident, key.proto, key.port, key.prefix_len)
                    out_denies.setdefault(twin, set()).update(denies[d])
    entries = {k: MapEntry(False, tuple(sorted(v, key=str))) for k, v in out_allows.items()}
    entries.update({k: MapEntry(True, tuple(sorted(v, key=str))) for k, v in out_denies.items()})
    return entries
