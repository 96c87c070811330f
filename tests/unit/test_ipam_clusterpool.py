"""cluster-pool: node CIDR carving, config and change rules, overlap detection, the node plan."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylium.base.errors import AllocationError, ConfigError
from pylium.base.netaddr import Network
from pylium.core.ipam.cidrset import EXHAUSTED, CIDRSet
from pylium.core.ipam.clusterpool import (
    CIDRStatus,
    NodeView,
    PoolConfig,
    Severity,
    check_change,
    check_config,
    check_overlap,
    check_pool_change,
    plan_nodes,
)

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
    held: set[Network] = set()
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


def test_check_pool_change_lists_every_problem_errors_first() -> None:
    problems = check_pool_change([N("10.0.0.0/16"), N("10.1.0.0/16")], 24, [N("10.9.0.0/16")], 30)
    assert [p.severity for p in problems] == [
        Severity.ERROR,
        Severity.ERROR,
        Severity.ERROR,
        Severity.WARNING,
    ]
    text = "\n".join(p.message for p in problems)
    assert "entry 0 changed from 10.0.0.0/16 to 10.9.0.0/16" in text
    assert "entry 1 (10.1.0.0/16) was removed" in text
    assert "cluster-pool-ipv4-mask-size changed from /24 to /30" in text
    assert "/29 or shorter is recommended" in text
    assert check_pool_change([N("10.0.0.0/16")], 24, [N("10.0.0.0/16"), N("10.2.0.0/16")], 24) == []


def test_empty_mixed_and_overlapping_pool_lists_are_refused() -> None:
    assert check_config(PoolConfig((), 24)).errors == (
        "cluster-pool-ipv4-cidr must be provided when using ClusterPool",
    )
    mixed = check_config(PoolConfig((N("10.0.0.0/16"), IPv6Network("fd00::/104")), 24))
    assert any("mixes IPv4 and IPv6" in e for e in mixed.errors)
    overlapping = check_config(PoolConfig((N("10.0.0.0/16"), N("10.0.128.0/17")), 24))
    assert overlapping.errors == (
        "cluster-pool-ipv4-cidr entries 10.0.0.0/16 and 10.0.128.0/17 overlap",
    )


@pytest.mark.parametrize(
    ("cidr", "mask", "fragment"),
    [
        ("fd00::/104", 120, None),  # upstream's IPv6 defaults
        ("fd00::/104", 121, "more than 2^16 blocks"),
        ("fd00::/120", 127, "leaves no pod addresses"),
        ("fd00::/120", 126, None),  # accepted, with a warning
    ],
)
def test_ipv6_mask_rules(cidr: str, mask: int, fragment: str | None) -> None:
    verdict = check_config(PoolConfig((IPv6Network(cidr),), mask))
    if fragment is None:
        assert verdict.ok, verdict.errors
    else:
        assert any(fragment in e and "cluster-pool-ipv6-mask-size" in e for e in verdict.errors)
    assert bool(verdict.warnings) == (mask == 126)


def test_a_cidr_held_by_two_nodes_or_outside_the_pool_is_kept_and_reported() -> None:
    cs = CIDRSet([N("10.0.0.0/22")], 24)
    nodes = [
        NodeView("b", (N("10.0.0.0/24"),)),
        NodeView("a", (N("10.0.0.0/24"),)),
        NodeView("c", (N("192.168.5.0/24"),)),
    ]
    decisions = {d.name: d for d in plan_nodes(cs, nodes)}
    assert decisions["a"].error == ""
    assert decisions["b"].error == "pod CIDR 10.0.0.0/24 is also allocated to node a"
    assert decisions["b"].pod_cidrs == (N("10.0.0.0/24"),)
    assert decisions["c"].error.startswith("pod CIDR 192.168.5.0/24 is not part of the cluster")
    assert cs.used == 1  # the shared block is taken once, the foreign one not at all


def test_recorded_config_round_trips_and_rejects_garbage() -> None:
    config = PoolConfig((N("10.0.0.0/16"), N("10.5.0.0/16")), 26)
    assert PoolConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="malformed"):
        PoolConfig.from_json({"cidrs": "10.0.0.0/8"})


@given(st.lists(st.sampled_from(["n1", "n2", "n3", "n4", "n5"]), min_size=1, max_size=5))
def test_plan_never_gives_one_block_to_two_nodes(names: list[str]) -> None:
    cs = CIDRSet([N("10.0.0.0/22")], 24)  # 4 blocks for up to 5 nodes
    decisions = plan_nodes(cs, [NodeView(n, ()) for n in sorted(set(names))])
    given_out = [c for d in decisions for c in d.pod_cidrs]
    assert len(given_out) == len(set(given_out)) == min(4, len(set(names)))
    assert sum(1 for d in decisions if d.error == EXHAUSTED) == max(0, len(set(names)) - 4)
