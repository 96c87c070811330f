"""L2: pod IPs from a node's CIDRs (agent side), with owners, restorable after a restart.

Which addresses of a block are never handed out is a :class:`Reservation`: in cluster-pool and
kubernetes mode each block's network and broadcast address (upstream's host-scope allocator
reserves two per block, so a /31 or /32 gives nothing); in multi-pool mode the first and last
address unless the pool allows them, blocks of fewer than three addresses being exempt. The
router IP (``cilium_host``) is the first usable address of the node's first CIDR, held by the
owner ``router``. State is the mapping ip -> owner: :meth:`HostScopeAllocator.snapshot` exports
it and :meth:`HostScopeAllocator.restore` takes it back after a restart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pylium.base import netaddr
from pylium.base.errors import AllocationError
from pylium.base.netaddr import Address, Network

__all__ = [
    "CLUSTER_POOL",
    "MULTI_POOL",
    "ROUTER_OWNER",
    "Address",
    "HostScopeAllocator",
    "Reservation",
    "Usage",
]

ROUTER_OWNER = "router"


@dataclass(frozen=True, slots=True)
class Reservation:
    """Which addresses of each block are never handed out."""

    first: bool = True
    last: bool = True
    small_blocks_exempt: bool = False
    """Blocks of fewer than 3 addresses (/31, /32, /127, /128) keep every address."""

    def indexes(self, cidr: Network) -> range:
        """Indexes of the usable addresses of ``cidr``."""
        if self.small_blocks_exempt and cidr.num_addresses < 3:
            return range(cidr.num_addresses)
        return netaddr.host_range(cidr, skip_first=self.first, skip_last=self.last)

    def capacity(self, cidr: Network) -> int:
        return len(self.indexes(cidr))

    def usable(self, ip: Address, cidr: Network) -> bool:
        return netaddr.contains(cidr, ip) and netaddr.address_index(cidr, ip) in self.indexes(cidr)


CLUSTER_POOL = Reservation()
"""cluster-pool and kubernetes modes: network and broadcast address of every block."""
MULTI_POOL = Reservation(small_blocks_exempt=True)
"""multi-pool with ``allowFirstIP``/``allowLastIP`` false (the default)."""


@dataclass(frozen=True, slots=True)
class Usage:
    used: int
    capacity: int
    cidrs: tuple[Network, ...]

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def status_line(self) -> str:
        """``IPv4: 6/254 allocated from 10.0.0.0/24`` as ``cilium-dbg status`` prints it after
        ``IPAM:``."""
        family = netaddr.family_name(self.cidrs[0]) if self.cidrs else "IPv4"
        cidrs = ", ".join(str(c) for c in self.cidrs) or "(no CIDR yet)"
        return f"{family}: {self.used}/{self.capacity} allocated from {cidrs}"


class HostScopeAllocator:
    """Owners of pod IPs in a node's CIDRs. Explicit state: ``cidrs`` and ``owners``."""

    def __init__(self, cidrs: Sequence[Network] = (), *, reservation: Reservation = CLUSTER_POOL):
        self.reservation = reservation
        self.cidrs: list[Network] = []
        self.owners: dict[Address, str] = {}
        for cidr in cidrs:
            self.add_cidr(cidr)

    def add_cidr(self, cidr: Network) -> None:
        """Another block to allocate from (a node that got a second CIDR); idempotent."""
        if cidr in self.cidrs:
            return
        for existing in self.cidrs:
            if netaddr.overlaps(existing, cidr):
                raise AllocationError(str(cidr), f"overlaps the node's CIDR {existing}")
        self.cidrs.append(cidr)

    def remove_cidr(self, cidr: Network) -> None:
        """Stop using ``cidr`` (released to the operator); refused while it holds an IP."""
        held = sorted(str(ip) for ip in self.owners if netaddr.contains(cidr, ip))
        if held:
            raise AllocationError(str(cidr), f"still holds allocations: {', '.join(held)}")
        if cidr in self.cidrs:
            self.cidrs.remove(cidr)

    def usable(self, ip: Address) -> bool:
        """Whether ``ip`` may be handed out here (in a CIDR and not reserved)."""
        return any(self.reservation.usable(ip, c) for c in self.cidrs)

    def _check_in_range(self, ip: Address) -> None:
        if not self.usable(ip):
            ranges = ", ".join(str(c) for c in self.cidrs) or "no CIDR yet"
            raise AllocationError(
                str(ip),
                f"not a usable address of this node's CIDRs ({ranges}); the first and last "
                "address of each block are reserved",
            )

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
        first = self.cidrs[0]
        indexes = self.reservation.indexes(first)
        if indexes:
            candidate = netaddr.nth_address(first, indexes[0])
            if candidate not in self.owners:
                self.owners[candidate] = ROUTER_OWNER
                return candidate
        return self.allocate(ROUTER_OWNER)

    def candidates(self) -> Iterator[Address]:
        """Free addresses, lowest first, across the CIDRs in the order they were added."""
        for cidr in self.cidrs:
            for index in self.reservation.indexes(cidr):
                ip = netaddr.nth_address(cidr, index)
                if ip not in self.owners:
                    yield ip

    def allocate(self, owner: str) -> Address:
        """The lowest free address, now held by ``owner``."""
        for ip in self.candidates():
            self.owners[ip] = owner
            return ip
        raise AllocationError(
            ", ".join(str(c) for c in self.cidrs) or "node (no CIDR yet)",
            "no free IP address left",
        )

    def allocate_specific(self, ip: Address, owner: str) -> None:
        """Hold ``ip`` for ``owner``; idempotent for the same owner, refused for another."""
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

    def check(self, ip: Address, owner: str) -> bool:
        """CNI CHECK: whether ``ip`` is held, and by ``owner``."""
        return self.owners.get(ip) == owner

    def snapshot(self) -> dict[Address, str]:
        """The allocations as a plain mapping, to persist; :meth:`restore` takes it back."""
        return dict(self.owners)

    def restore(self, allocations: Mapping[Address, str]) -> list[str]:
        """Take back persisted allocations (they are never handed out again while held).

        Entries outside this node's CIDRs, on a reserved address, or held by another owner
        are refused; the returned list names each one and why (empty when all were taken).
        """
        problems = []
        for ip, owner in sorted(allocations.items(), key=lambda kv: (kv[0].version, int(kv[0]))):
            try:
                self.allocate_specific(ip, owner)
            except AllocationError as err:
                problems.append(f"cannot restore {ip} for {owner}: {err.reason}")
        return problems

    def usage(self) -> Usage:
        capacity = sum(self.reservation.capacity(c) for c in self.cidrs)
        return Usage(len(self.owners), capacity, tuple(self.cidrs))

    def full(self) -> bool:
        return next(self.candidates(), None) is None
