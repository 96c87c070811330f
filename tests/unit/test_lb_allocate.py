"""ClusterIP and NodePort allocation: bands, explicit requests, errors, state round trip."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.base.errors import AllocationError
from pylium.core.lb.allocate import ClusterIPAllocator, NodePortAllocator, static_band_size


def test_band_sizes() -> None:
    assert static_band_size(2**20, step=16, cap=256) == 256  # /12
    assert static_band_size(2768, step=32, cap=128) == 86  # 30000-32767
    assert static_band_size(16, step=16, cap=256) == 0
    assert static_band_size(32, step=16, cap=256) == 16


def test_default_cidr_dynamic_ips_start_above_the_static_band() -> None:
    alloc = ClusterIPAllocator()
    assert str(alloc.cidr) == "10.96.0.0/12"
    assert str(alloc.allocate("default/a")) == "10.96.1.1"
    assert str(alloc.allocate("default/b")) == "10.96.1.2"


def test_explicit_ip_honoured_including_the_first_usable() -> None:
    alloc = ClusterIPAllocator()
    assert str(alloc.allocate("default/kubernetes", "10.96.0.1")) == "10.96.0.1"
    assert str(alloc.allocate("kube-system/kube-dns", "10.96.0.10")) == "10.96.0.10"
    # The same owner asking again gets the same answer.
    assert str(alloc.allocate("default/kubernetes", "10.96.0.1")) == "10.96.0.1"


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("10.96.0.0", "not in the valid range 10.96.0.0/12"),  # network address
        ("10.111.255.255", "not in the valid range"),  # broadcast
        ("10.112.0.1", "not in the valid range"),
        ("fd00::1", "not in the valid range"),
        ("ten", "not an IP address"),
    ],
)
def test_out_of_range(ip: str, reason: str) -> None:
    with pytest.raises(AllocationError, match=reason):
        ClusterIPAllocator().allocate("default/a", ip)


def test_conflict_names_the_holder() -> None:
    alloc = ClusterIPAllocator()
    alloc.allocate("default/a", "10.96.0.50")
    with pytest.raises(
        AllocationError, match=re.escape("10.96.0.50: already allocated to default/a")
    ):
        alloc.allocate("default/b", "10.96.0.50")
    alloc.release("10.96.0.50")
    assert alloc.allocate("default/b", "10.96.0.50") == ipaddress.ip_address("10.96.0.50")


def test_static_band_used_once_the_upper_one_is_full_then_exhaustion() -> None:
    alloc = ClusterIPAllocator(ipaddress.ip_network("10.0.0.0/27"))  # 30 usable, band of 16
    got = [str(alloc.allocate(f"ns/s{i}")) for i in range(30)]
    assert got[:2] == ["10.0.0.17", "10.0.0.18"]
    assert got[13] == "10.0.0.30"
    assert got[14:16] == ["10.0.0.1", "10.0.0.2"]
    assert len(set(got)) == 30
    with pytest.raises(AllocationError, match=re.escape("10.0.0.0/27: range is full")):
        alloc.allocate("ns/one-more")


def test_ipv6_cidr() -> None:
    alloc = ClusterIPAllocator(ipaddress.ip_network("fd00:10:96::/112"))
    assert str(alloc.allocate("default/a")) == "fd00:10:96::101"
    assert str(alloc.allocate("default/b", "fd00:10:96::ffff")) == "fd00:10:96::ffff"


def test_clusterip_state_round_trip() -> None:
    alloc = ClusterIPAllocator()
    alloc.allocate("default/kubernetes", "10.96.0.1")
    alloc.allocate("default/web")
    data = json.loads(json.dumps(alloc.to_dict()))
    assert data == {
        "cidr": "10.96.0.0/12",
        "allocated": {"10.96.0.1": "default/kubernetes", "10.96.1.1": "default/web"},
    }
    again = ClusterIPAllocator.from_dict(data)
    assert again.allocated == alloc.allocated
    assert str(again.allocate("default/next")) == "10.96.1.2"


def test_nodeports() -> None:
    alloc = NodePortAllocator()
    assert alloc.allocate("default/a") == 30086
    assert alloc.allocate("default/b", 30000) == 30000
    assert alloc.allocate("default/b", 30000) == 30000  # TCP and UDP of one service
    with pytest.raises(AllocationError, match="30000: already allocated to default/b"):
        alloc.allocate("default/c", 30000)
    with pytest.raises(AllocationError, match="29999: not in the valid range 30000-32767"):
        alloc.allocate("default/c", 29999)
    again = NodePortAllocator.from_dict(json.loads(json.dumps(alloc.to_dict())))
    assert again.allocated == {30000: "default/b", 30086: "default/a"}
    with pytest.raises(AllocationError, match="not a valid port range"):
        NodePortAllocator(40000, 30000)


def test_nodeport_exhaustion() -> None:
    alloc = NodePortAllocator(30000, 30009)
    assert sorted(alloc.allocate(f"ns/s{i}") for i in range(10)) == list(range(30000, 30010))
    with pytest.raises(AllocationError, match="30000-30009: range is full"):
        alloc.allocate("ns/more")


ops = st.lists(
    st.tuples(st.sampled_from(["alloc", "want", "release"]), st.integers(0, 40)), max_size=120
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_no_ip_handed_out_twice(steps: list[tuple[str, int]]) -> None:
    """Across any mix of dynamic, explicit and release calls, owners never share an IP."""
    alloc = ClusterIPAllocator(ipaddress.ip_network("10.0.0.0/27"))
    mine: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for i, (op, n) in enumerate(steps):
        owner = f"ns/s{i}"
        try:
            if op == "alloc":
                mine[owner] = alloc.allocate(owner)
            elif op == "want":
                mine[owner] = alloc.allocate(owner, f"10.0.0.{n}")
            elif mine:
                victim = sorted(mine)[n % len(mine)]
                alloc.release(mine.pop(victim))
        except AllocationError:
            continue
        assert len(set(mine.values())) == len(mine)
        assert {ip: o for o, ip in mine.items()} == alloc.allocated
