"""ENI IPAM core: upstream's watermark arithmetic, allocation and release plans, limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.base.errors import ConfigError
from pylium.core.ipam.eni import netconf
from pylium.core.ipam.eni.limits import STATIC_LIMITS, Limits, from_describe_instance_types
from pylium.core.ipam.eni.plan import (
    ENI,
    ENISpec,
    ReleaseState,
    SecurityGroup,
    Subnet,
    Watermarks,
    candidate_subnets,
    capacity,
    excess_ips,
    needed_ips,
    plan_allocation,
    plan_release,
    pool_of,
    release_step,
    security_groups_for,
)

M5 = Limits(adapters=3, ipv4=10)
SPEC = ENISpec(instance_id="i-1", instance_type="m5.large", vpc_id="vpc-1", availability_zone="a")
SUBNETS = [
    Subnet("subnet-small", "vpc-1", "a", "10.0.1.0/24", 20, (("tier", "pods"),)),
    Subnet("subnet-big", "vpc-1", "a", "10.0.2.0/24", 200, (("tier", "pods"),)),
    Subnet("subnet-other-az", "vpc-1", "b", "10.0.3.0/24", 250),
    Subnet("subnet-untagged", "vpc-1", "a", "10.0.4.0/24", 100),
]


def eth0(n: int = 0) -> ENI:
    return ENI("eni-0", 0, "subnet-big", "10.0.2.4", tuple(f"10.0.2.{10 + i}" for i in range(n)))


def test_needed_ips_upstream_cases() -> None:
    w = Watermarks(pre_allocate=8)
    assert needed_ips(available=0, used=0, w=w) == 8
    assert needed_ips(available=8, used=3, w=w) == 3
    assert needed_ips(available=20, used=3, w=w) == 0
    assert needed_ips(0, 0, Watermarks(pre_allocate=1, min_allocate=10)) == 10
    assert needed_ips(5, 5, Watermarks(pre_allocate=8, max_allocate=10)) == 5
    assert needed_ips(10, 10, Watermarks(pre_allocate=8, max_allocate=10)) == 0


def test_excess_ips_upstream_cases() -> None:
    w = Watermarks(pre_allocate=8, min_allocate=10, max_above_watermark=2)
    assert excess_ips(available=11, used=0, w=w) == 0  # below min + above-watermark: kept
    assert excess_ips(available=20, used=0, w=w) == 10
    assert excess_ips(available=20, used=15, w=w) == 0


def test_watermarks_default_pre_allocate() -> None:
    assert Watermarks.from_spec({}).pre_allocate == 8
    assert Watermarks.from_spec({"pre-allocate": 3, "max-above-watermark": 2}) == Watermarks(
        3, 0, 0, 2
    )


def test_new_node_fills_eth0_then_creates_in_the_biggest_subnet() -> None:
    plan = plan_allocation(
        spec=SPEC,
        watermarks=Watermarks(pre_allocate=16),
        limits=M5,
        enis=[eth0()],
        used=0,
        subnets=SUBNETS,
        security_groups=("sg-1",),
    )
    assert plan.needed == 16
    assert plan.assign[0].eni_id == "eni-0" and plan.assign[0].count == 9
    assert plan.create[0].index == 1 and plan.create[0].subnet_id == "subnet-big"
    assert plan.create[0].count == 7 and plan.total == 16 and not plan.error


def test_first_interface_index_skips_eth0() -> None:
    spec = ENISpec(instance_id="i-1", instance_type="m5.large", first_interface_index=1)
    plan = plan_allocation(
        spec=spec,
        watermarks=Watermarks(pre_allocate=4),
        limits=M5,
        enis=[eth0()],
        used=0,
        subnets=SUBNETS,
        security_groups=(),
    )
    assert not plan.assign and [c.index for c in plan.create] == [1]


def test_instance_limit_is_a_clear_error_and_no_over_allocation() -> None:
    full = [eth0(9), ENI("eni-1", 1, "subnet-big", "10.0.2.50", ("10.0.2.51",) * 9)]
    plan = plan_allocation(
        spec=SPEC,
        watermarks=Watermarks(pre_allocate=30),
        limits=M5,
        enis=full,
        used=18,
        subnets=SUBNETS,
        security_groups=(),
    )
    assert plan.total == 9 and [c.index for c in plan.create] == [2]
    assert "reached its limits" in plan.error and "m5.large" in plan.error


def test_subnet_selection_by_ids_then_tags() -> None:
    by_ids = ENISpec("i", "t", "vpc-1", "a", subnet_ids=("subnet-small",))
    assert [s.id for s in candidate_subnets(SUBNETS, by_ids)] == ["subnet-small"]
    by_tags = ENISpec("i", "t", "vpc-1", "a", subnet_tags=(("tier", "pods"),))
    assert [s.id for s in candidate_subnets(SUBNETS, by_tags)] == ["subnet-big", "subnet-small"]
    default = [s.id for s in candidate_subnets(SUBNETS, SPEC)]
    assert default == ["subnet-big", "subnet-untagged", "subnet-small"]


def test_security_groups_ids_tags_or_eth0() -> None:
    groups = [SecurityGroup("sg-a", "vpc-1", (("k", "v"),)), SecurityGroup("sg-b", "vpc-1")]
    e0 = ENI("eni-0", 0, "s", "ip", security_groups=("sg-eth0",))
    assert security_groups_for(ENISpec("i", "t", security_groups=("sg-x",)), groups, [e0]) == (
        "sg-x",
    )
    tagged = ENISpec("i", "t", "vpc-1", security_group_tags=(("k", "v"),))
    assert security_groups_for(tagged, groups, [e0]) == ("sg-a",)
    assert security_groups_for(SPEC, groups, [e0]) == ("sg-eth0",)


def test_excluded_interfaces_are_not_in_the_pool() -> None:
    spec = ENISpec("i", "t", exclude_interface_tags=(("skip", "yes"),))
    enis = [eth0(2), ENI("eni-x", 1, "s", "p", ("10.9.9.9",), tags=(("skip", "yes"),))]
    assert pool_of(enis, spec) == {"10.0.2.10": "eni-0", "10.0.2.11": "eni-0"}


def test_limits_from_describe_instance_types() -> None:
    page = {
        "InstanceTypes": [
            {
                "InstanceType": "x1.big",
                "NetworkInfo": {
                    "MaximumNetworkInterfaces": 7,
                    "Ipv4AddressesPerInterface": 30,
                    "Ipv6AddressesPerInterface": 30,
                },
            }
        ]
    }
    assert from_describe_instance_types([page]) == {"x1.big": Limits(7, 30, 30)}
    assert STATIC_LIMITS["m5.large"] == Limits(3, 10, 10)


def test_release_takes_from_the_eni_with_most_free_and_never_used() -> None:
    enis = [eth0(9), ENI("eni-1", 1, "s", "10.0.3.4", ("10.0.3.5", "10.0.3.6"))]
    eni_id, ips = plan_release(
        spec=SPEC, watermarks=Watermarks(pre_allocate=2), enis=enis, used=["10.0.2.10"]
    )
    assert eni_id == "eni-0" and len(ips) == 8 and "10.0.2.10" not in ips


def test_release_handshake_grace_period() -> None:
    first = release_step(candidates=["ip1"], release_ips={}, first_seen={}, now=100, delay=10)
    assert first.mark == [] and first.first_seen == {"ip1": 100}
    later = release_step(
        candidates=["ip1"], release_ips={}, first_seen=first.first_seen, now=111, delay=10
    )
    assert later.mark == ["ip1"]
    answered = release_step(
        candidates=["ip1"],
        release_ips={"ip1": ReleaseState.READY, "ip2": ReleaseState.DO_NOT_RELEASE},
        first_seen=later.first_seen,
        now=112,
        delay=10,
    )
    assert answered.release == ["ip1"] and answered.unmark == ["ip2"] and not answered.mark


# -- properties ------------------------------------------------------------------------------

limits_st = st.builds(Limits, adapters=st.integers(1, 8), ipv4=st.integers(2, 12))


@st.composite
def node_state(draw: st.DrawFn) -> tuple[Limits, list[ENI], Watermarks, int, int]:
    limits = draw(limits_st)
    n = draw(st.integers(1, limits.adapters))
    enis = []
    counter = 0
    for index in sorted(draw(st.sets(st.integers(0, limits.adapters - 1), min_size=n, max_size=n))):
        k = draw(st.integers(0, limits.ipv4 - 1))
        addrs = tuple(f"10.{index}.0.{counter + i}" for i in range(k))
        counter += k
        enis.append(ENI(f"eni-{index}", index, "subnet-big", f"10.{index}.1.1", addrs))
    w = Watermarks(
        pre_allocate=draw(st.integers(1, 40)),
        min_allocate=draw(st.integers(0, 40)),
        max_allocate=draw(st.integers(0, 60)),
        max_above_watermark=draw(st.integers(0, 10)),
    )
    first = draw(st.integers(0, 2))
    pool_size = sum(len(e.addresses) for e in enis if e.number >= first)
    used = draw(st.integers(0, pool_size))
    return limits, enis, w, first, used


@settings(max_examples=300, deadline=None)
@given(node_state(), st.integers(0, 1000))
def test_plan_never_exceeds_limits_nor_reuses_an_index(
    state: tuple[Limits, list[ENI], Watermarks, int, int], subnet_free: int
) -> None:
    limits, enis, w, first, used = state
    spec = ENISpec("i-1", "t", "vpc-1", "a", first_interface_index=first)
    subnets = [Subnet("subnet-big", "vpc-1", "a", "10.0.0.0/16", subnet_free)]
    plan = plan_allocation(
        spec=spec,
        watermarks=w,
        limits=limits,
        enis=enis,
        used=used,
        subnets=subnets,
        security_groups=(),
    )
    by_id = {e.id: e for e in enis}
    for a in plan.assign:
        assert a.count > 0 and len(by_id[a.eni_id].addresses) + 1 + a.count <= limits.ipv4
        assert by_id[a.eni_id].number >= first
    assert len({a.eni_id for a in plan.assign}) == len(plan.assign)
    indexes = [c.index for c in plan.create]
    assert len(set(indexes)) == len(indexes)
    assert not set(indexes) & {e.number for e in enis}
    assert all(
        first <= i < limits.adapters and 0 < c.count < limits.ipv4
        for i, c in zip(indexes, plan.create, strict=True)
    )
    assert len(enis) + len(plan.create) <= limits.adapters
    pool = len(pool_of(enis, spec))
    assert plan.total <= plan.needed + w.max_above_watermark
    if w.max_allocate:
        assert pool + plan.total <= max(w.max_allocate, pool)
    # Subnet addresses are never over-committed (each new ENI's primary included).
    assert plan.total + len(plan.create) <= subnet_free
    # Short of what is needed only with an error saying why.
    if plan.total < plan.needed:
        assert plan.error
    if capacity(enis, spec, limits) >= plan.needed + w.max_above_watermark and subnet_free > 200:
        assert plan.total >= plan.needed


@settings(max_examples=200, deadline=None)
@given(node_state(), st.data())
def test_release_never_takes_a_used_ip(
    state: tuple[Limits, list[ENI], Watermarks, int, int], data: st.DataObject
) -> None:
    _, enis, w, first, _ = state
    spec = ENISpec("i-1", "t", first_interface_index=first)
    pool = sorted(pool_of(enis, spec))
    used = data.draw(st.lists(st.sampled_from(pool), unique=True) if pool else st.just([]))
    eni_id, ips = plan_release(spec=spec, watermarks=w, enis=enis, used=used)
    assert not set(ips) & set(used)
    assert len(ips) <= excess_ips(len(pool), len(used), w)
    if ips:
        assert set(ips) <= set(next(e for e in enis if e.id == eni_id).addresses)
    after = len(pool) - len(ips)
    assert after - len(used) >= min(w.pre_allocate, len(pool) - len(used))


def test_custom_cni_config_eni_and_ipam_sections() -> None:
    conflist = {
        "cniVersion": "0.3.1",
        "name": "cilium",
        "plugins": [
            {
                "type": "cilium-cni",
                "eni": {"subnet-tags": {"tier": "pods"}, "first-interface-index": 1},
                "ipam": {"pre-allocate": 4, "max-above-watermark": 2},
            }
        ],
    }
    conf = netconf.parse(json.dumps(conflist))
    assert conf.eni == {"subnet-tags": {"tier": "pods"}, "first-interface-index": 1}
    assert conf.ipam == {"pre-allocate": 4, "max-above-watermark": 2}
    assert netconf.parse('{"type": "cilium-cni"}') == netconf.ENINetConf()
    with pytest.raises(ConfigError, match=r"ipam.pre-allocate"):
        netconf.parse('{"ipam": {"pre-allocate": -1}}')
    with pytest.raises(ConfigError, match="not a JSON"):
        netconf.parse("{")


def test_unknown_instance_type_is_an_error_not_a_guess() -> None:
    plan = plan_allocation(
        spec=ENISpec("i-1", "z9.huge"),
        watermarks=Watermarks(),
        limits=None,
        enis=[eth0()],
        used=0,
        subnets=SUBNETS,
        security_groups=(),
    )
    assert (
        plan.total == 0 and "unable to determine limits" in plan.error and "z9.huge" in plan.error
    )


def test_pod_routing_through_its_eni_table() -> None:
    from pylium.core.ipam.eni import routing

    plan = routing.plan_pod(
        pod_ip="192.168.105.44",
        eni_number=2,
        device="eth2",
        subnet_cidr="192.168.0.0/20",
        vpc_cidrs=["192.168.0.0/16"],
        masquerade=True,
    )
    assert plan.rules == (
        routing.Rule(20, 254, dst="192.168.105.44/32"),
        routing.Rule(110, 12, src="192.168.105.44/32", dst="192.168.0.0/16"),
    )
    assert plan.routes == (
        routing.Route(12, "192.168.0.1/32", "eth2", scope_link=True),
        routing.Route(12, "default", "eth2", gateway="192.168.0.1"),
    )
    unmasq = routing.plan_pod(
        pod_ip="192.168.105.44",
        eni_number=0,
        device="eth0",
        subnet_cidr="192.168.0.0/20",
        vpc_cidrs=["192.168.0.0/16"],
        masquerade=False,
    )
    assert unmasq.rules[1] == routing.Rule(110, 10, src="192.168.105.44/32")
    gone = routing.Rule(110, 12, src="192.168.105.9/32", dst="192.168.0.0/16")
    foreign = routing.Rule(110, 12, src="10.1.1.1/32")
    assert routing.stale(
        [*plan.rules, gone, foreign],
        [plan],
        pod_prefixes=["192.168.105.44/32", "192.168.105.9/32"],
    ) == [gone]


def _cilium_node_with_eni() -> dict[str, Any]:
    """A CiliumNode as the operator writes it: the pool names each IP's ENI."""
    return {
        "spec": {
            "ipam": {
                "pool": {
                    "100.64.1.20": {"resource": "eni-1"},
                    "100.64.1.21": {"resource": "eni-gone"},
                }
            }
        },
        "status": {
            "eni": {
                "enis": {
                    "eni-1": {
                        "id": "eni-1",
                        "mac": "02:00:00:AA:BB:CC",
                        "number": 2,
                        "subnet": {"id": "subnet-1", "cidr": "100.64.1.0/24"},
                        "vpc": {
                            "id": "vpc-1",
                            "primary-cidr": "10.0.0.0/16",
                            "cidrs": ["100.64.1.0/24", "10.0.0.0/16"],
                        },
                    }
                }
            }
        },
    }


def test_pod_eni_from_the_cilium_node() -> None:
    from pylium.core.ipam.eni import routing

    node = _cilium_node_with_eni()
    eni = routing.pod_eni(node, "100.64.1.20")
    assert eni == routing.PodENI(
        id="eni-1",
        number=2,
        mac="02:00:00:aa:bb:cc",
        subnet_cidr="100.64.1.0/24",
        vpc_cidrs=("10.0.0.0/16", "100.64.1.0/24"),
    )
    # Not in the pool, or its ENI's status not written yet: nothing to route by.
    assert routing.pod_eni(node, "100.64.1.99") is None
    assert routing.pod_eni(node, "100.64.1.21") is None
    assert routing.pod_eni({}, "100.64.1.20") is None
    assert routing.egress_cidrs(eni) == ["10.0.0.0/16", "100.64.1.0/24"]
    assert routing.egress_cidrs(eni, "172.16.0.0/12") == [
        "10.0.0.0/16",
        "100.64.1.0/24",
        "172.16.0.0/12",
    ]
    assert routing.egress_cidrs(eni, "10.0.0.0/16") == ["10.0.0.0/16", "100.64.1.0/24"]


def test_egress_masquerade_interfaces_as_nftables_names() -> None:
    from pylium.adapters.netlink.masquerade import nft_interface

    assert nft_interface("eth0") == '"eth0"'
    assert nft_interface("eth+") == '"eth*"'
