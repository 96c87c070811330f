"""Agent-side pod IPs: reserved addresses, the router IP, several CIDRs, CHECK, restore after a
restart; a state machine checks that no IP is ever handed out twice."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pylium.base.errors import AllocationError
from pylium.base.netaddr import Address
from pylium.core.ipam.hostscope import (
    CLUSTER_POOL,
    MULTI_POOL,
    ROUTER_OWNER,
    HostScopeAllocator,
    Reservation,
)
from pylium.core.ipam.multipool import reservation as pool_reservation

N = IPv4Network
A = IPv4Address


def test_never_hands_out_network_or_broadcast() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/30")])
    assert alloc.ensure_router() == A("10.0.0.1")
    assert alloc.allocate("default/a") == A("10.0.0.2")
    with pytest.raises(AllocationError, match="no free IP"):
        alloc.allocate("default/b")
    for ip in ("10.0.0.0", "10.0.0.3", "10.0.1.5"):
        with pytest.raises(AllocationError, match="first and last address"):
            alloc.allocate_specific(A(ip), "x")
    assert alloc.usage().status_line() == "IPv4: 2/2 allocated from 10.0.0.0/30"
    assert alloc.usage().free == 0


@pytest.mark.parametrize(
    ("cidr", "reservation", "capacity"),
    [
        ("10.0.0.0/24", CLUSTER_POOL, 254),
        ("10.0.0.0/31", CLUSTER_POOL, 0),  # upstream reserves two per block, always
        ("10.0.0.0/32", CLUSTER_POOL, 0),
        ("10.0.0.0/24", MULTI_POOL, 254),
        ("10.0.0.0/31", MULTI_POOL, 2),  # multi-pool: blocks under 3 addresses exempt
        ("10.0.0.0/32", MULTI_POOL, 1),
        ("10.0.0.0/28", pool_reservation(allow_first=True), 15),
        ("10.0.0.0/28", pool_reservation(allow_first=True, allow_last=True), 16),
    ],
)
def test_reservation_capacity(cidr: str, reservation: Reservation, capacity: int) -> None:
    assert HostScopeAllocator([N(cidr)], reservation=reservation).usage().capacity == capacity


def test_allow_first_ip_hands_out_the_network_address() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/29")], reservation=pool_reservation(allow_first=True))
    assert alloc.allocate("a") == A("10.0.0.0")
    with pytest.raises(AllocationError):
        alloc.allocate_specific(A("10.0.0.7"), "b")


def test_second_cidr_restore_check_and_harmless_release() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/30")])
    alloc.ensure_router()
    alloc.allocate("a")
    alloc.add_cidr(N("10.0.0.8/30"))
    alloc.add_cidr(N("10.0.0.8/30"))  # idempotent
    assert alloc.allocate("b") == A("10.0.0.9")
    assert not alloc.release(A("10.0.0.10"))  # unknown: harmless
    assert alloc.check(A("10.0.0.9"), "b") and not alloc.check(A("10.0.0.9"), "a")
    assert not alloc.check(A("10.0.0.10"), "b")
    snapshot = alloc.snapshot()
    again = HostScopeAllocator([N("10.0.0.0/30"), N("10.0.0.8/30")])
    assert again.restore(snapshot) == []
    assert again.router_ip == A("10.0.0.1") and again.ensure_router() == A("10.0.0.1")
    assert again.allocate("c") == A("10.0.0.10")  # restored ones are never handed out again
    with pytest.raises(AllocationError, match="already allocated to a"):
        again.allocate_specific(A("10.0.0.2"), "someone-else")
    again.allocate_specific(A("10.0.0.2"), "a")  # same owner: idempotent
    assert again.usage().status_line() == "IPv4: 4/4 allocated from 10.0.0.0/30, 10.0.0.8/30"


def test_restore_refuses_outside_and_reserved_addresses_with_the_reason() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/30")])
    problems = alloc.restore({A("10.9.9.9"): "z", A("10.0.0.3"): "y", A("10.0.0.2"): "x"})
    assert problems == [
        "cannot restore 10.0.0.3 for y: not a usable address of this node's CIDRs "
        "(10.0.0.0/30); the first and last address of each block are reserved",
        "cannot restore 10.9.9.9 for z: not a usable address of this node's CIDRs "
        "(10.0.0.0/30); the first and last address of each block are reserved",
    ]
    assert alloc.snapshot() == {A("10.0.0.2"): "x"}


def test_overlapping_cidr_and_removing_a_used_one_are_refused() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/24")])
    with pytest.raises(AllocationError, match="overlaps"):
        alloc.add_cidr(N("10.0.0.128/25"))
    alloc.add_cidr(N("10.0.1.0/24"))
    alloc.allocate_specific(A("10.0.1.7"), "a")
    with pytest.raises(AllocationError, match=r"still holds allocations: 10\.0\.1\.7"):
        alloc.remove_cidr(N("10.0.1.0/24"))
    alloc.release(A("10.0.1.7"))
    alloc.remove_cidr(N("10.0.1.0/24"))
    assert alloc.cidrs == [N("10.0.0.0/24")]


def test_no_cidr_yet_and_ipv6() -> None:
    empty = HostScopeAllocator()
    with pytest.raises(AllocationError, match="no pod CIDR yet"):
        empty.ensure_router()
    assert empty.usage().status_line() == "IPv4: 0/0 allocated from (no CIDR yet)"
    v6 = HostScopeAllocator([IPv6Network("fd00::/120")])
    assert v6.ensure_router() == IPv6Address("fd00::1")
    assert v6.usage().status_line() == "IPv6: 1/254 allocated from fd00::/120"


CIDRS = (N("10.1.0.0/28"), N("10.1.0.16/29"))  # 14 + 6 usable
RESERVED = {A("10.1.0.0"), A("10.1.0.15"), A("10.1.0.16"), A("10.1.0.23")}
ALL = [A(int(A("10.1.0.0")) + i) for i in range(24)] + [A("10.2.0.1")]


class HostScopeMachine(RuleBasedStateMachine):
    """Any interleaving of allocate / allocate_specific / release / restart / second CIDR."""

    def __init__(self) -> None:
        super().__init__()
        self.cidrs = [CIDRS[0]]
        self.alloc = HostScopeAllocator(self.cidrs)
        self.live: dict[Address, str] = {self.alloc.ensure_router(): ROUTER_OWNER}
        self.n = 0

    def _owner(self) -> str:
        self.n += 1
        return f"pod{self.n}"

    @rule()
    def allocate(self) -> None:
        owner = self._owner()
        if self.alloc.full():
            with pytest.raises(AllocationError):
                self.alloc.allocate(owner)
            return
        ip = self.alloc.allocate(owner)
        assert ip not in self.live, f"{ip} handed out twice"
        self.live[ip] = owner

    @rule(ip=st.sampled_from(ALL))
    def allocate_specific(self, ip: IPv4Address) -> None:
        owner = self._owner()
        usable = ip not in RESERVED and any(ip in c for c in self.cidrs)
        if not usable or ip in self.live:
            with pytest.raises(AllocationError):
                self.alloc.allocate_specific(ip, owner)
            return
        self.alloc.allocate_specific(ip, owner)
        self.live[ip] = owner

    @rule(ip=st.sampled_from(ALL))
    def release(self, ip: IPv4Address) -> None:
        if self.live.get(ip) == ROUTER_OWNER:
            return
        assert self.alloc.release(ip) == (ip in self.live)
        self.live.pop(ip, None)

    @rule()
    def restart(self) -> None:
        persisted = self.alloc.snapshot()
        self.alloc = HostScopeAllocator(self.cidrs)
        assert self.alloc.restore(persisted) == []
        assert self.alloc.ensure_router() == next(
            ip for ip, o in self.live.items() if o == ROUTER_OWNER
        )

    @precondition(lambda self: len(self.cidrs) == 1)
    @rule()
    def second_cidr(self) -> None:
        self.cidrs.append(CIDRS[1])
        self.alloc.add_cidr(CIDRS[1])

    @invariant()
    def state_matches_and_counts_hold(self) -> None:
        assert self.alloc.snapshot() == self.live
        usage = self.alloc.usage()
        assert usage.used == len(self.live)
        assert usage.capacity == (14 if len(self.cidrs) == 1 else 20)
        assert usage.free == sum(1 for _ in self.alloc.candidates())
        assert not RESERVED & set(self.live)


TestHostScopeMachine = HostScopeMachine.TestCase
TestHostScopeMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_released_ips_come_back_lowest_first() -> None:
    alloc = HostScopeAllocator([N("10.0.0.0/29")])
    ips = [alloc.allocate(f"p{i}") for i in range(6)]
    assert alloc.full()
    alloc.release(ips[3])
    alloc.release(ips[1])
    assert [alloc.allocate("x"), alloc.allocate("y")] == [ips[1], ips[3]]
