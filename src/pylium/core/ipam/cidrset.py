"""L2: carving fixed-size node CIDRs out of an ordered list of pool CIDRs (cluster-pool).

Like upstream's cidrset: each pool CIDR is split into blocks of ``mask_size``; blocks are
handed out lowest first, across the pool CIDRs in list order. State is explicit: which blocks
are taken. Restoring from existing CiliumNodes is ``occupy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pylium.base import netaddr
from pylium.base.errors import AllocationError
from pylium.base.netaddr import Network

__all__ = ["EXHAUSTED", "CIDRSet", "Network"]

EXHAUSTED = (
    "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
)
"""Upstream's message, shown in ``status.ipam.operator-status.error``."""


@dataclass
class CIDRSet:
    """Blocks of ``mask_size`` carved from ``pools`` (in order); tracks which are taken."""

    pools: Sequence[Network]
    mask_size: int
    taken: set[Network] = field(default_factory=set)

    def __post_init__(self) -> None:
        for pool in self.pools:
            if not pool.prefixlen <= self.mask_size <= pool.max_prefixlen:
                raise AllocationError(
                    str(pool),
                    f"mask size /{self.mask_size} must be between /{pool.prefixlen} "
                    f"and /{pool.max_prefixlen}",
                )

    @property
    def capacity(self) -> int:
        return sum(netaddr.subnet_count(p, self.mask_size) for p in self.pools)

    @property
    def used(self) -> int:
        return len(self.taken)

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def allocate(self) -> Network:
        """The lowest free block; AllocationError (upstream's message) when none is left."""
        for pool in self.pools:
            # Walk the taken indexes rather than the blocks, so that a /8 carved in /24s
            # (65536 blocks) stays cheap.
            taken_here = sorted(
                netaddr.subnet_index(pool, t) for t in self.taken if netaddr.contains(pool, t)
            )
            index = 0
            for t in taken_here:
                if t > index:
                    break
                index = t + 1
            if index < netaddr.subnet_count(pool, self.mask_size):
                block = netaddr.nth_subnet(pool, self.mask_size, index)
                self.taken.add(block)
                return block
        raise AllocationError(", ".join(str(p) for p in self.pools), EXHAUSTED)

    def occupy(self, block: Network) -> None:
        """Mark ``block`` taken (restoring state); it must be one of this set's blocks."""
        if not self.contains(block):
            raise AllocationError(
                str(block), f"not a /{self.mask_size} block of {', '.join(map(str, self.pools))}"
            )
        self.taken.add(block)

    def release(self, block: Network) -> bool:
        """Give ``block`` back; False (harmless) when it was not taken."""
        if block in self.taken:
            self.taken.remove(block)
            return True
        return False

    def contains(self, block: Network) -> bool:
        """Whether ``block`` is one of this set's blocks (taken or not)."""
        return block.prefixlen == self.mask_size and any(
            netaddr.contains(p, block) for p in self.pools
        )
