"""L0: prefix and address arithmetic over the stdlib ``ipaddress`` module.

Everything takes and returns ``ipaddress`` objects, never strings. Subnets and addresses are
addressed by index (the n-th /24 of a /8, the n-th address of a block) so that large
prefixes are never materialised: carving a /8 into /24s is arithmetic, not a list of 65536
networks. Functions that compare two prefixes treat different families as disjoint instead
of raising, as ``ipaddress`` does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def family_name(net: Network | Address) -> str:
    """``IPv4`` or ``IPv6``, as Cilium prints it in status lines."""
    return f"IPv{net.version}"


def subnet_count(parent: Network, prefixlen: int) -> int:
    """How many /``prefixlen`` subnets ``parent`` holds."""
    _check_prefixlen(parent, prefixlen)
    return 1 << (prefixlen - parent.prefixlen)


def subnet_size(parent: Network, prefixlen: int) -> int:
    """Addresses in one /``prefixlen`` subnet of ``parent``'s family."""
    return 1 << (parent.max_prefixlen - prefixlen)


def nth_subnet(parent: Network, prefixlen: int, index: int) -> Network:
    """The ``index``-th /``prefixlen`` subnet of ``parent`` (0 is the lowest)."""
    count = subnet_count(parent, prefixlen)
    if not 0 <= index < count:
        raise IndexError(f"{parent} has {count} /{prefixlen} subnets; index {index} is outside")
    start = int(parent.network_address) + index * subnet_size(parent, prefixlen)
    return ipaddress.ip_network((_as(parent, start), prefixlen))


def subnet_index(parent: Network, child: Network) -> int:
    """The position of ``child`` among ``parent``'s subnets of ``child``'s length.

    ValueError when ``child`` is not a subnet of ``parent``.
    """
    if not contains(parent, child):
        raise ValueError(f"{child} is not a subnet of {parent}")
    offset = int(child.network_address) - int(parent.network_address)
    return offset // subnet_size(parent, child.prefixlen)


def subnets(parent: Network, prefixlen: int, *, start: int = 0) -> Iterator[Network]:
    """The /``prefixlen`` subnets of ``parent`` in address order, lazily, from ``start``."""
    for index in range(start, subnet_count(parent, prefixlen)):
        yield nth_subnet(parent, prefixlen, index)


def nth_address(net: Network, index: int) -> Address:
    """The ``index``-th address of ``net``; negative indexes count from the end (-1 is the
    last, the broadcast address of an IPv4 block)."""
    size = net.num_addresses
    if not -size <= index < size:
        raise IndexError(f"{net} has {size} addresses; index {index} is outside")
    base = int(net.network_address) if index >= 0 else int(net.broadcast_address) + 1
    return _as(net, base + index)


def address_index(net: Network, ip: Address) -> int:
    """The position of ``ip`` in ``net``; ValueError when it is not in it."""
    if not contains(net, ip):
        raise ValueError(f"{ip} is not in {net}")
    return int(ip) - int(net.network_address)


def host_range(net: Network, *, skip_first: bool, skip_last: bool) -> range:
    """Indexes of ``net``'s addresses, without the first and/or last one."""
    return range(1 if skip_first else 0, net.num_addresses - (1 if skip_last else 0))


def contains(outer: Network, inner: Network | Address) -> bool:
    """Whether ``inner`` (a prefix or an address) lies inside ``outer``; False across
    families."""
    if outer.version != inner.version:
        return False
    if isinstance(inner, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return inner.prefixlen >= outer.prefixlen and int(inner.network_address) & int(
            outer.netmask
        ) == int(outer.network_address)
    return int(inner) & int(outer.netmask) == int(outer.network_address)


def overlaps(a: Network, b: Network) -> bool:
    """Whether two prefixes share an address; False across families."""
    return contains(a, b) or contains(b, a)


def overlapping_pairs(
    left: Iterable[Network], right: Iterable[Network]
) -> list[tuple[Network, Network]]:
    """Every (l, r) with l from ``left`` and r from ``right`` that overlap, in input order."""
    rights = list(right)
    return [(a, b) for a in left for b in rights if overlaps(a, b)]


def overlaps_within(nets: Sequence[Network]) -> list[tuple[Network, Network]]:
    """Pairs of entries of one list that overlap each other (each pair once, in order)."""
    return [(a, b) for i, a in enumerate(nets) for b in nets[i + 1 :] if overlaps(a, b)]


def _check_prefixlen(parent: Network, prefixlen: int) -> None:
    if not parent.prefixlen <= prefixlen <= parent.max_prefixlen:
        raise ValueError(
            f"/{prefixlen} subnets of {parent}: the length must be between "
            f"/{parent.prefixlen} and /{parent.max_prefixlen}"
        )


def _as(net: Network | Address, value: int) -> Address:
    # ip_address(int) picks IPv4 for small integers; an IPv6 prefix must stay IPv6.
    if net.version == 6:
        return ipaddress.IPv6Address(value)
    return ipaddress.IPv4Address(value)
