"""base.netaddr: subnet and address arithmetic by index, agreeing with the ipaddress module."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylium.base import netaddr

N4, N6 = IPv4Network, IPv6Network


def test_subnets_in_order_and_by_index() -> None:
    assert list(netaddr.subnets(N4("10.0.0.0/22"), 24)) == [
        N4("10.0.0.0/24"),
        N4("10.0.1.0/24"),
        N4("10.0.2.0/24"),
        N4("10.0.3.0/24"),
    ]
    assert list(netaddr.subnets(N4("10.0.0.0/22"), 24, start=3)) == [N4("10.0.3.0/24")]
    assert netaddr.subnet_count(N4("10.0.0.0/8"), 24) == 65536
    assert netaddr.nth_subnet(N4("10.0.0.0/8"), 24, 65535) == N4("10.255.255.0/24")
    assert netaddr.subnet_index(N4("10.0.0.0/8"), N4("10.1.2.0/24")) == 258
    # IPv6 stays IPv6 even for low integers.
    assert netaddr.nth_subnet(N6("::/120"), 124, 1) == N6("::10/124")
    with pytest.raises(IndexError):
        netaddr.nth_subnet(N4("10.0.0.0/23"), 24, 2)
    with pytest.raises(ValueError, match="between /23 and /32"):
        netaddr.subnet_count(N4("10.0.0.0/23"), 22)
    with pytest.raises(ValueError, match="not a subnet"):
        netaddr.subnet_index(N4("10.0.0.0/24"), N4("10.0.1.0/25"))


def test_addresses_by_index_and_host_range() -> None:
    net = N4("10.0.0.0/30")
    assert netaddr.nth_address(net, 0) == IPv4Address("10.0.0.0")
    assert netaddr.nth_address(net, -1) == IPv4Address("10.0.0.3")
    assert netaddr.nth_address(N6("fd00::/126"), 1) == IPv6Address("fd00::1")
    assert netaddr.address_index(net, IPv4Address("10.0.0.2")) == 2
    with pytest.raises(IndexError):
        netaddr.nth_address(net, 4)
    with pytest.raises(ValueError):
        netaddr.address_index(net, IPv4Address("10.0.0.4"))
    assert netaddr.host_range(net, skip_first=True, skip_last=True) == range(1, 3)
    assert netaddr.host_range(N4("10.0.0.0/31"), skip_first=True, skip_last=True) == range(1, 1)
    assert netaddr.host_range(net, skip_first=False, skip_last=True) == range(0, 3)


def test_containment_and_overlap_are_family_safe() -> None:
    assert netaddr.contains(N4("10.0.0.0/8"), N4("10.1.0.0/16"))
    assert not netaddr.contains(N4("10.1.0.0/16"), N4("10.0.0.0/8"))
    assert netaddr.contains(N4("10.0.0.0/8"), IPv4Address("10.9.9.9"))
    assert not netaddr.contains(N6("::/0"), IPv4Address("10.9.9.9"))
    assert not netaddr.overlaps(N4("0.0.0.0/0"), N6("::/0"))
    assert netaddr.overlapping_pairs(
        [N4("10.0.0.0/8"), N4("172.16.0.0/12")], [N4("10.1.2.0/24"), N4("192.168.0.0/16")]
    ) == [(N4("10.0.0.0/8"), N4("10.1.2.0/24"))]
    assert netaddr.overlaps_within([N4("10.0.0.0/16"), N4("10.1.0.0/16"), N4("10.0.5.0/24")]) == [
        (N4("10.0.0.0/16"), N4("10.0.5.0/24"))
    ]
    assert netaddr.family_name(N6("fd00::/104")) == "IPv6"


networks = st.builds(
    lambda value, length: ipaddress.ip_network((value, length), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@given(networks, st.integers(0, 8), st.data())
def test_nth_subnet_round_trips_and_matches_ipaddress(
    parent: IPv4Network, extra: int, data: st.DataObject
) -> None:
    length = min(parent.prefixlen + extra, 32)
    count = netaddr.subnet_count(parent, length)
    index = data.draw(st.integers(0, count - 1))
    child = netaddr.nth_subnet(parent, length, index)
    assert child.subnet_of(parent)  # type: ignore[arg-type]
    assert netaddr.subnet_index(parent, child) == index
    if count <= 256:
        assert list(netaddr.subnets(parent, length)) == list(parent.subnets(new_prefix=length))


@given(networks, networks)
def test_contains_and_overlaps_agree_with_ipaddress(a: IPv4Network, b: IPv4Network) -> None:
    assert netaddr.contains(a, b) == b.subnet_of(a)
    assert netaddr.overlaps(a, b) == a.overlaps(b)
