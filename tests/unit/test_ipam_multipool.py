"""multi-pool: pool selection order, the pre-allocation watermark, the chunk plan (grow on need,
shrink when unused), first/last IP rules and the pool update rules."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.base import netaddr
from pylium.base.errors import AllocationError
from pylium.base.netaddr import Address, Network
from pylium.core.ipam.cidrset import EXHAUSTED, CIDRSet
from pylium.core.ipam.multipool import (
    NodePoolState,
    PoolSpec,
    check_pool_update,
    needed_ips,
    plan_chunks,
    reservation,
    select_pool,
    usable,
)

POOLS = {"default", "blue", "red"}
POD = "ipam.cilium.io/ip-pool"


@pytest.mark.parametrize(
    ("pod", "namespace", "expected"),
    [
        ({}, {}, "default"),
        ({POD: "blue"}, {}, "blue"),
        ({}, {POD: "red"}, "red"),
        ({POD: "blue"}, {POD: "red"}, "blue"),  # the pod's annotation wins
        ({"ipam.cilium.io/ipv4-pool": "red"}, {}, "red"),
        ({POD: "nope"}, {POD: "red"}, "default"),  # unknown falls back to default
    ],
)
def test_selection_order(pod: dict[str, str], namespace: dict[str, str], expected: str) -> None:
    assert select_pool(pod, namespace, POOLS) == expected


def test_required_match_refuses_unknown_pool() -> None:
    with pytest.raises(AllocationError, match="does not exist"):
        select_pool({POD: "nope", "ipam.cilium.io/require-pool-match": "true"}, {}, POOLS)
    with pytest.raises(AllocationError, match="does not exist"):
        select_pool({}, {POD: "nope", "ipam.cilium.io/require-pool-match": "true"}, POOLS)
    with pytest.raises(AllocationError, match="no pool named default"):
        select_pool({}, {}, {"blue"})


def test_chunks_grow_with_need_and_shrink_when_unused() -> None:
    cs = CIDRSet([IPv4Network("10.20.0.0/24")], 28)  # 16 chunks of 14 usable
    first = plan_chunks(cs, [NodePoolState("n1", (), 20), NodePoolState("n2", (), 8)])
    assert [len(d.chunks) for d in first] == [2, 1]
    n1_chunks = first[0].chunks
    assert all(usable(c) == 14 for c in n1_chunks)

    # n1's need drops; its second chunk holds no allocation: it goes back to the pool.
    cs = CIDRSet([IPv4Network("10.20.0.0/24")], 28)
    used: frozenset[Address] = frozenset({netaddr.nth_address(n1_chunks[0], 1)})
    second = plan_chunks(
        cs,
        [NodePoolState("n1", n1_chunks, 9, used), NodePoolState("n2", first[1].chunks, 8)],
    )
    assert second[0].chunks == (n1_chunks[0],)
    assert second[1].chunks == first[1].chunks

    # A chunk with an allocation is never taken back, whatever the need says.
    cs = CIDRSet([IPv4Network("10.20.0.0/24")], 28)
    busy = frozenset({IPv4Address(int(n1_chunks[1].network_address) + 3)})
    third = plan_chunks(cs, [NodePoolState("n1", n1_chunks, 1, busy)])
    assert third[0].chunks == (n1_chunks[1],)


def test_exhaustion_reported() -> None:
    cs = CIDRSet([IPv4Network("10.20.0.0/27")], 28)
    decisions = plan_chunks(cs, [NodePoolState("n1", (), 40)])
    assert len(decisions[0].chunks) == 2
    assert decisions[0].error == EXHAUSTED


def test_family_annotation_beats_the_generic_one() -> None:
    both = {"ipam.cilium.io/ipv4-pool": "red", POD: "blue", "ipam.cilium.io/ipv6-pool": "blue"}
    assert select_pool(both, {}, POOLS) == "red"
    assert select_pool(both, {}, POOLS, family=6) == "blue"
    assert select_pool({"ipam.cilium.io/ipv6-pool": "red"}, {POD: "blue"}, POOLS) == "blue"


@pytest.mark.parametrize(
    ("in_use", "pre", "pending", "needed"),
    [(0, 16, 0, 16), (1, 16, 0, 32), (15, 16, 0, 32), (16, 16, 0, 32), (17, 16, 0, 48),
     (3, 8, 5, 16), (5, 0, 2, 7)],
)  # fmt: skip
def test_needed_ips_keeps_a_pre_allocation_buffer(
    in_use: int, pre: int, pending: int, needed: int
) -> None:
    assert needed_ips(in_use, pre, pending) == needed


@given(st.integers(0, 500), st.integers(1, 64))
def test_needed_ips_always_leaves_pre_allocate_spare(in_use: int, pre: int) -> None:
    needed = needed_ips(in_use, pre)
    assert needed % pre == 0 and in_use + pre <= needed < in_use + 2 * pre


def test_allow_first_and_last_ip_change_chunk_capacity() -> None:
    chunk = IPv4Network("10.0.0.0/28")
    assert usable(chunk) == 14
    assert usable(chunk, allow_first=True, allow_last=True) == 16
    assert usable(IPv4Network("10.0.0.0/31")) == 2  # small blocks exempt
    cs = CIDRSet([IPv4Network("10.20.0.0/24")], 28)
    plan = plan_chunks(
        cs,
        [NodePoolState("n1", (), 16)],
        reserve=reservation(allow_first=True, allow_last=True),
    )
    assert len(plan[0].chunks) == 1


def test_pool_updates_keep_mask_flags_and_used_cidrs() -> None:
    old = PoolSpec((IPv4Network("10.20.0.0/16"), IPv4Network("10.30.0.0/16")), 27)
    grown = PoolSpec((*old.cidrs, IPv4Network("10.40.0.0/16")), 27)
    assert check_pool_update("blue", old, grown, [IPv4Network("10.20.0.0/27")]) == []
    problems = check_pool_update(
        "blue",
        old,
        PoolSpec((IPv4Network("10.30.0.0/16"),), 26, allow_first_ip=True),
        [IPv4Network("10.20.0.32/27")],
    )
    assert problems == [
        "CiliumPodIPPool blue: maskSize changed from /27 to /26; it is immutable",
        "CiliumPodIPPool blue: allowFirstIP is immutable",
        "CiliumPodIPPool blue: CIDR 10.20.0.0/16 cannot be removed while nodes hold chunks "
        "of it (10.20.0.32/27)",
    ]
    unused_removed = PoolSpec((IPv4Network("10.30.0.0/16"),), 27)
    assert check_pool_update("blue", old, unused_removed, [IPv4Network("10.30.0.0/27")]) == []


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.integers(0, 60), st.integers(0, 40)),
        min_size=1,
        max_size=12,
    )
)
def test_chunk_plans_never_share_a_chunk_and_cover_need_or_say_why(
    steps: list[tuple[str, int, int]],
) -> None:
    held: dict[str, tuple[Network, ...]] = {"n1": (), "n2": (), "n3": ()}
    for node, needed, used_count in steps:
        cs = CIDRSet([IPv4Network("10.20.0.0/25")], 28)  # 8 chunks of 14: the operator restarts
        states = []
        for name, chunks in held.items():
            hosts = [ip for c in chunks for ip in c.hosts()]
            used = frozenset(hosts[:used_count]) if name == node else frozenset()
            states.append(NodePoolState(name, chunks, needed if name == node else 14, used))
        decisions = plan_chunks(cs, states)
        all_chunks = [c for d in decisions for c in d.chunks]
        assert len(all_chunks) == len(set(all_chunks))
        for d, s in zip(decisions, sorted(states, key=lambda s: s.node), strict=True):
            assert all(any(ip in c for c in d.chunks) for ip in s.used_ips)  # in use: kept
            assert sum(usable(c) for c in d.chunks) >= s.needed or d.error == EXHAUSTED
        held = {d.node: d.chunks for d in decisions}
