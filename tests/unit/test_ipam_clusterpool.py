"""cluster-pool: node CIDR carving, the config rules, overlap detection, pod IP allocation."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import EXHAUSTED, CIDRSet
from pylium.core.ipam.clusterpool import (
    CIDRStatus,
    NodeView,
    PoolConfig,
    check_change,
    check_config,
    check_overlap,
    plan_nodes,
)
from pylium.core.ipam.hostscope import ROUTER_OWNER, HostScopeAllocator

N = IPv4Network


def test_cidrset_carves_in_order_across_pools_then_exhausts() -> None:
    cs = CIDRSet([N("10.0.0.0/23"), N("10.9.0.0/24")], 24)
    assert cs.capacity == 3
    assert [cs.allocate() for _ in range(3)] == [
        N("10.0.0.0/24"),
        N("10.0.1.0/24"),
        N("10.9.0.0/24"),
    ]
    with pytest.raises(AllocationError) as err:
        cs.allocate()
    assert err.value.reason == EXHAUSTED
    assert cs.release(N("10.0.1.0/24"))
    assert cs.allocate() == N("10.0.1.0/24")


def test_cidrset_occupy_restores_and_refuses_foreign_blocks() -> None:
    cs = CIDRSet([N("10.0.0.0/16")], 24)
    cs.occupy(N("10.0.0.0/24"))
    cs.occupy(N("10.0.2.0/24"))
    assert cs.allocate() == N("10.0.1.0/24")
    assert cs.allocate() == N("10.0.3.0/24")
    for bad in (N("10.1.0.0/24"), N("10.0.5.0/25")):
        with pytest.raises(AllocationError):
            cs.occupy(bad)


def test_cidrset_large_pool_is_cheap() -> None:
    cs = CIDRSet([N("10.0.0.0/8")], 24)
    blocks = {cs.allocate() for _ in range(300)}
    assert len(blocks) == 300 and cs.capacity == 65536


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=60))
def test_cidrset_never_hands_out_a_block_twice(ops: list[tuple[bool, int]]) -> None:
    cs = CIDRSet([N("10.0.0.0/26"), N("10.0.1.0/27")], 29)  # 8 + 4 blocks
    held: set[IPv4Network] = set()
    for is_alloc, pick in ops:
        if is_alloc:
            try:
                block = cs.allocate()
            except AllocationError:
                assert len(held) == cs.capacity
                continue
            assert block not in held
            held.add(block)
        elif held:
            victim = sorted(held)[pick % len(held)]
            held.remove(victim)
            assert cs.release(victim)
        assert cs.used == len(held)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (["10.0.0.0/16"], ["10.1.0.0/16"], "entry 0 changed"),
        (["10.0.0.0/16", "10.1.0.0/16"], ["10.0.0.0/16"], "entry 1 (10.1.0.0/16) was removed"),
        (["10.0.0.0/16"], ["10.1.0.0/16", "10.0.0.0/16"], "entry 0 changed"),
    ],
)
def test_pool_list_only_grows_by_appending(old: list[str], new: list[str], fragment: str) -> None:
    verdict = check_change(
        PoolConfig(tuple(N(c) for c in old), 24), PoolConfig(tuple(N(c) for c in new), 24)
    )
    assert not verdict.ok
    assert any(fragment in e for e in verdict.errors), verdict.errors


def test_appending_is_accepted_and_mask_is_immutable() -> None:
    old = PoolConfig((N("10.0.0.0/16"),), 24)
    assert check_change(old, PoolConfig((N("10.0.0.0/16"), N("10.5.0.0/16")), 24)).ok
    changed = check_change(old, PoolConfig((N("10.0.0.0/16"),), 25))
    assert any("cannot change after deployment" in e for e in changed.errors)


@pytest.mark.parametrize(
    ("mask", "ok", "warned"),
    [
        (24, True, False),
        (29, True, False),
        (30, True, True),
        (31, False, False),
        (32, False, False),
        (8, False, False),
    ],
)
def test_mask_size_rules(mask: int, ok: bool, warned: bool) -> None:
    verdict = check_config(PoolConfig((N("10.0.0.0/16"),), mask))
    assert verdict.ok == ok
    assert bool(verdict.warnings) == warned


def test_overlap_with_node_network_reported_with_fix() -> None:
    problems = check_overlap([N("10.0.0.0/8")], [N("10.1.2.0/24"), N("192.168.1.0/24")])
    assert len(problems) == 1
    assert "10.1.2.0/24" in problems[0] and "choose a cluster-pool-ipv4-cidr" in problems[0]
    assert check_overlap([N("10.244.0.0/16")], [N("192.168.1.0/24")]) == ()


def test_plan_gives_blocks_restores_and_reports_exhaustion() -> None:
    cs = CIDRSet([N("10.0.0.0/23")], 24)
    nodes = [
        NodeView("n2", (N("10.0.0.0/24"),)),  # restored: keeps its block
        NodeView("n1", ()),
        NodeView("n3", ()),
    ]
    decisions = {d.name: d for d in plan_nodes(cs, nodes)}
    assert decisions["n2"].pod_cidrs == (N("10.0.0.0/24"),)
    assert decisions["n1"].pod_cidrs == (N("10.0.1.0/24"),)
    assert decisions["n3"].pod_cidrs == ()
    assert decisions["n3"].error == EXHAUSTED


def test_plan_adds_a_block_to_a_depleted_node_and_takes_released_ones_back() -> None:
    cs = CIDRSet([N("10.0.0.0/22")], 24)
    nodes = [
        NodeView("n1", (N("10.0.0.0/24"),), {"10.0.0.0/24": CIDRStatus.DEPLETED}),
        NodeView("n2", (N("10.0.1.0/24"), N("10.0.2.0/24")), {"10.0.2.0/24": CIDRStatus.RELEASED}),
    ]
    decisions = {d.name: d for d in plan_nodes(cs, nodes)}
    assert decisions["n2"].pod_cidrs == (N("10.0.1.0/24"),)
    assert decisions["n1"].pod_cidrs == (N("10.0.0.0/24"), N("10.0.2.0/24"))


def test_hostscope_never_hands_out_network_or_broadcast() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/30")])
    router = alloc.ensure_router()
    assert router == IPv4Address("10.0.0.1")
    assert alloc.allocate("default/a") == IPv4Address("10.0.0.2")
    with pytest.raises(AllocationError, match="no free IP"):
        alloc.allocate("default/b")
    for ip in ("10.0.0.0", "10.0.0.3", "10.0.1.5"):
        with pytest.raises(AllocationError):
            alloc.allocate_specific(IPv4Address(ip), "x")
    assert alloc.usage().status_line() == "IPv4: 2/2 allocated from 10.0.0.0/30"


def test_hostscope_second_cidr_restore_and_harmless_release() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/30")])
    alloc.ensure_router()
    alloc.allocate("a")
    alloc.add_cidr(N("10.0.0.8/30"))
    assert alloc.allocate("b") == IPv4Address("10.0.0.9")
    assert not alloc.release(IPv4Address("10.0.0.10"))  # unknown: harmless
    snapshot = dict(alloc.owners)
    again = HostScopeAllocator([N("10.0.0.0/30"), N("10.0.0.8/30")])
    assert again.restore(snapshot) == []
    assert again.router_ip == IPv4Address("10.0.0.1")
    assert again.allocate("c") == IPv4Address("10.0.0.10")
    problems = HostScopeAllocator([N("10.0.0.0/30")]).restore({IPv4Address("10.9.9.9"): "z"})
    assert len(problems) == 1 and "10.9.9.9" in problems[0]
    with pytest.raises(AllocationError, match="already allocated to a"):
        again.allocate_specific(IPv4Address("10.0.0.2"), "someone-else")


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "release", "restart"]), st.integers(0, 50))))
def test_hostscope_no_ip_twice_across_releases_and_restarts(ops: list[tuple[str, int]]) -> None:
    cidrs = [N("10.1.0.0/28"), N("10.1.0.16/29")]
    alloc = HostScopeAllocator(cidrs)
    alloc.ensure_router()
    live: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
    for n, (op, pick) in enumerate(ops):
        if op == "alloc":
            if alloc.full():
                with pytest.raises(AllocationError):
                    alloc.allocate(f"pod{n}")
                continue
            ip = alloc.allocate(f"pod{n}")
            assert ip not in live and ip != alloc.router_ip
            live[ip] = f"pod{n}"
        elif op == "release" and live:
            ip = sorted(live)[pick % len(live)]
            del live[ip]
            assert alloc.release(ip)
        elif op == "restart":
            alloc = HostScopeAllocator(cidrs)
            assert alloc.restore({**live, **{IPv4Address("10.1.0.1"): ROUTER_OWNER}}) == []
        assert alloc.usage().used == len(live) + 1
        assert alloc.usage().capacity == 14 + 6
