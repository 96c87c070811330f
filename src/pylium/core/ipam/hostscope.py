"""L2: pod IPs from a node's CIDRs (agent side), with owners, restorable after a restart.

Never handed out: each block's network and broadcast address. The router IP (``cilium_host``)
is the first usable address of the node's first CIDR, held by the owner ``router``. State is
the mapping ip -> owner; :meth:`restore` rebuilds it from persisted allocations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ROUTER_OWNER = "router"


@dataclass(frozen=True, slots=True)
class Usage:
    used: int
    capacity: int
    cidrs: tuple[Network, ...]

    def status_line(self) -> str:
        """``IPv4: 6/254 allocated from 10.0.0.0/24`` as ``cilium-dbg status`` prints it."""
        cidrs = ", ".join(str(c) for c in self.cidrs) or "(no CIDR yet)"
        return f"IPv4: {self.used}/{self.capacity} allocated from {cidrs}"


def _is_usable(ip: Address, cidr: Network) -> bool:
    if ip not in cidr:
        return False
    value = int(ip)
    return cidr.num_addresses <= 2 or int(cidr.network_address) < value < int(
        cidr.broadcast_address
    )


def _capacity(cidr: Network) -> int:
    return cidr.num_addresses if cidr.num_addresses <= 2 else cidr.num_addresses - 2


def _usable(cidr: Network) -> Iterator[Address]:
    if cidr.num_addresses <= 2:  # /31, /32: every address is usable
        yield from cidr
        return
    first, last = int(cidr.network_address) + 1, int(cidr.broadcast_address) - 1
    for value in range(first, last + 1):
        yield ipaddress.ip_address(value)


class HostScopeAllocator:
    def __init__(self, cidrs: Sequence[Network] = ()) -> None:
        self.cidrs: list[Network] = []
        self.owners: dict[Address, str] = {}
        for cidr in cidrs:
            self.add_cidr(cidr)

    def add_cidr(self, cidr: Network) -> None:
        if cidr in self.cidrs:
            return
        for existing in self.cidrs:
            if existing.overlaps(cidr):
                raise AllocationError(str(cidr), f"overlaps the node's CIDR {existing}")
        self.cidrs.append(cidr)

    def _check_in_range(self, ip: Address) -> None:
        if not any(_is_usable(ip, c) for c in self.cidrs):
            ranges = ", ".join(str(c) for c in self.cidrs) or "no CIDR"
            raise AllocationError(str(ip), f"not a usable address of this node's CIDRs ({ranges})")

    @property
    def router_ip(self) -> Address | None:
        for ip, owner in self.owners.items():
            if owner == ROUTER_OWNER:
                return ip
        return None

    def ensure_router(self) -> Address:
        """The router IP, allocating the first usable address of the first CIDR if needed."""
        current = self.router_ip
        if current is not None:
            return current
        if not self.cidrs:
            raise AllocationError("router", "the node has no pod CIDR yet")
        candidate = next(_usable(self.cidrs[0]))
        if candidate in self.owners:
            return self.allocate(ROUTER_OWNER)
        self.owners[candidate] = ROUTER_OWNER
        return candidate

    def candidates(self) -> Iterator[Address]:
        """Free addresses, lowest first, across the CIDRs in the order they were added."""
        for cidr in self.cidrs:
            for ip in _usable(cidr):
                if ip not in self.owners:
                    yield ip

    def allocate(self, owner: str) -> Address:
        for ip in self.candidates():
            self.owners[ip] = owner
            return ip
        raise AllocationError(
            ", ".join(str(c) for c in self.cidrs) or "node", "no free IP address left"
        )

    def allocate_specific(self, ip: Address, owner: str) -> None:
        self._check_in_range(ip)
        holder = self.owners.get(ip)
        if holder is not None and holder != owner:
            raise AllocationError(str(ip), f"already allocated to {holder}")
        self.owners[ip] = owner

    def release(self, ip: Address) -> bool:
        """Free ``ip``; False (and harmless) when it was not allocated."""
        return self.owners.pop(ip, None) is not None

    def owner_of(self, ip: Address) -> str | None:
        return self.owners.get(ip)

    def restore(self, allocations: Mapping[Address, str]) -> list[str]:
        """Take back persisted allocations; returns problems for ones outside the CIDRs."""
        problems = []
        for ip, owner in allocations.items():
            try:
                self.allocate_specific(ip, owner)
            except AllocationError as err:
                problems.append(str(err))
        return problems

    def usage(self) -> Usage:
        capacity = sum(_capacity(c) for c in self.cidrs)
        return Usage(len(self.owners), capacity, tuple(self.cidrs))

    def full(self) -> bool:
        return next(self.candidates(), None) is None
