"""L2: carving fixed-size node CIDRs out of an ordered list of pool CIDRs (cluster-pool).

Like upstream's cidrset: each pool CIDR is split into blocks of ``mask_size``; blocks are
handed out lowest first, across the pool CIDRs in list order. State is explicit: which blocks
are taken. Restoring from existing CiliumNodes is ``occupy``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from pylium.base.errors import AllocationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

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
            if self.mask_size < pool.prefixlen or self.mask_size > pool.max_prefixlen:
                raise AllocationError(
                    str(pool),
                    f"mask size /{self.mask_size} must be between /{pool.prefixlen} "
                    f"and /{pool.max_prefixlen}",
                )

    @property
    def capacity(self) -> int:
        return sum(2 ** (self.mask_size - p.prefixlen) for p in self.pools)

    @property
    def used(self) -> int:
        return len(self.taken)

    def allocate(self) -> Network:
        """The lowest free block; AllocationError (upstream's message) when none is left."""
        for pool in self.pools:
            size = 2 ** (pool.max_prefixlen - self.mask_size)
            count = 2 ** (self.mask_size - pool.prefixlen)
            # Skip over taken blocks by index arithmetic rather than materialising subnets,
            # so a /8 carved in /24s (65536 blocks) stays cheap.
            taken_here = sorted(
                (int(t.network_address) - int(pool.network_address)) // size
                for t in self.taken
                if t.subnet_of(pool)  # type: ignore[arg-type]
            )
            index = 0
            for t in taken_here:
                if t > index:
                    break
                if t == index:
                    index += 1
            if index < count:
                block = ipaddress.ip_network(
                    (int(pool.network_address) + index * size, self.mask_size)
                )
                self.taken.add(block)
                return block
        raise AllocationError(", ".join(str(p) for p in self.pools), EXHAUSTED)

    def occupy(self, block: Network) -> None:
        """Mark ``block`` taken (restoring state); it must be one of this set's blocks."""
        if block.prefixlen != self.mask_size or not any(
            block.version == p.version and block.subnet_of(p)  # type: ignore[arg-type]
            for p in self.pools
        ):
            raise AllocationError(
                str(block), f"not a /{self.mask_size} block of {', '.join(map(str, self.pools))}"
            )
        self.taken.add(block)

    def release(self, block: Network) -> bool:
        if block in self.taken:
            self.taken.remove(block)
            return True
        return False

    def contains(self, block: Network) -> bool:
        return block.prefixlen == self.mask_size and any(
            block.version == p.version and block.subnet_of(p)  # type: ignore[arg-type]
            for p in self.pools
        )
