"""multi-pool: the pool selection order and the chunk plan (grow on need, shrink when unused)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import EXHAUSTED, CIDRSet
from pylium.core.ipam.multipool import NodePoolState, plan_chunks, select_pool, usable

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
    used = frozenset({next(iter(n1_chunks[0].hosts()))})
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
