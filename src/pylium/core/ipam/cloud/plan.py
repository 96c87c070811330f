"""L2: the cloud IPAM state machine shared by AWS ENI, Azure and AlibabaCloud IPAM.

Upstream's arithmetic (``pkg/ipam/node.go``): a node keeps ``pre-allocate`` IPs free
(default 8), at least ``min-allocate`` in its pool, at most ``max-allocate``; it allocates
``max-above-watermark`` beyond what it needs when it allocates at all, and counts as excess
only what lies above ``pre-allocate + max-above-watermark`` free IPs once the pool is past
``min-allocate + max-above-watermark``.

The providers describe an instance the same way: interfaces (an AWS ENI, an Azure NIC, an
AlibabaCloud ENI) holding secondary addresses, in subnets (AlibabaCloud: vSwitches) with a
count of free addresses, within the instance type's :class:`Limits`. The allocation plan fills
free slots on the node's existing interfaces first (device index at least
``first-interface-index``, not excluded by ``exclude-interface-tags``), then -- where the
provider can create interfaces -- creates and attaches new ones at free device indexes, in the
subnet with the most free addresses among those the node's spec allows. The release plan
takes unused IPs from the interface holding the most of them; :func:`release_step` is
upstream's release handshake. Nothing here does I/O or reads a clock: times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PRE_ALLOCATE = 8
"""``pkg/defaults`` IPAMPreAllocation: used when ``spec.ipam.pre-allocate`` is 0 or unset."""

Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one instance type allows (``ipamTypes.Limits`` upstream)."""

    adapters: int
    """Network interfaces per instance (EC2 ``MaximumNetworkInterfaces``, ECS ``EniQuantity``,
    the NICs of an Azure VM size)."""
    ipv4: int
    """IPv4 addresses per interface, the primary included."""
    ipv6: int = 0
    """IPv6 addresses per interface."""

    @property
    def max_secondary_ips(self) -> int:
        """Pod IPs one instance can hold: every interface's addresses but its primary."""
        return self.adapters * (self.ipv4 - 1)


def tags_of(mapping: Mapping[str, str] | None) -> Tags:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


def matches_all(have: Tags, want: Tags) -> bool:
    """Whether every ``want`` tag is among ``have`` (an empty ``want`` matches nothing)."""
    return bool(want) and set(want) <= set(have)


# -- watermarks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Watermarks:
    """``spec.ipam.{pre,min,max}-allocate`` and ``max-above-watermark`` of one CiliumNode."""

    pre_allocate: int = DEFAULT_PRE_ALLOCATE
    min_allocate: int = 0
    max_allocate: int = 0
    max_above_watermark: int = 0

    @classmethod
    def from_spec(cls, ipam: Mapping[str, Any]) -> Watermarks:
        pre = int(ipam.get("pre-allocate") or 0)
        return cls(
            pre_allocate=pre if pre > 0 else DEFAULT_PRE_ALLOCATE,
            min_allocate=int(ipam.get("min-allocate") or 0),
            max_allocate=int(ipam.get("max-allocate") or 0),
            max_above_watermark=int(ipam.get("max-above-watermark") or 0),
        )


def needed_ips(available: int, used: int, w: Watermarks) -> int:
    """Upstream ``calculateNeededIPs``: IPs to add so that ``pre-allocate`` stay free, the
    pool reaches ``min-allocate``, never beyond ``max-allocate``."""
    needed = w.pre_allocate - (available - used)
    if w.min_allocate > 0:
        needed = max(needed, w.min_allocate - available)
    if w.max_allocate > 0 and available + needed > w.max_allocate:
        needed = w.max_allocate - available
    return max(needed, 0)


def excess_ips(available: int, used: int, w: Watermarks) -> int:
    """Upstream ``calculateExcessIPs``: IPs that may go back. Nothing while the pool has not
    outgrown ``min-allocate + max-above-watermark`` (the bootstrap allocation)."""
    if w.min_allocate + w.max_above_watermark > available:
        return 0
    return max(available - used - w.pre_allocate - w.max_above_watermark, 0)


# -- cloud state, as the operator caches it --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Interface:
    """One network interface attached to an instance (an AWS ENI, an Azure NIC, an
    AlibabaCloud ENI)."""

    id: str
    number: int
    """Device index of the attachment (0 = the instance's primary interface, eth0)."""
    subnet_id: str
    primary_ip: str
    addresses: tuple[str, ...] = ()
    """Secondary private IPv4 addresses: the ones pods get (Azure: the non-primary IP
    configurations)."""
    security_groups: tuple[str, ...] = ()
    tags: Tags = ()
    mac: str = ""


@dataclass(frozen=True, slots=True)
class Subnet:
    """A subnet (AlibabaCloud: a vSwitch) new addresses come out of."""

    id: str
    vpc_id: str
    availability_zone: str
    cidr: str
    available: int
    """Free addresses in the subnet (``AvailableIpAddressCount``)."""
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    """A security group (Azure: a network security group)."""

    id: str
    vpc_id: str
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """Where a node's interfaces and addresses may come from: ``CiliumNode.spec.eni``,
    ``spec.azure`` or ``spec.alibaba-cloud`` (plus ``spec.instance-id``), read by the
    provider."""

    instance_id: str
    instance_type: str
    vpc_id: str = ""
    availability_zone: str = ""
    node_subnet_id: str = ""
    first_interface_index: int = 0
    subnet_ids: tuple[str, ...] = ()
    subnet_tags: Tags = ()
    security_groups: tuple[str, ...] = ()
    security_group_tags: Tags = ()
    exclude_interface_tags: Tags = ()
    delete_on_termination: bool = True
    spec_key: str = "eni"
    """The CiliumNode spec section, for messages (``eni``, ``azure``, ``alibaba-cloud``)."""
    subnet_words: tuple[str, str] = ("subnet-ids", "subnet-tags")
    """The section's names of ``subnet_ids`` and ``subnet_tags``, for messages."""

    def problems(self) -> list[str]:
        """What is missing for the operator to allocate for this node."""
        out = []
        if not self.instance_id:
            out.append("spec.instance-id is empty")
        if not self.instance_type:
            out.append(f"spec.{self.spec_key}.instance-type is empty")
        if self.first_interface_index < 0:
            out.append(f"spec.{self.spec_key}.first-interface-index must be 0 or more")
        return out


def usable_interfaces(enis: Iterable[Interface], spec: NodeSpec) -> list[Interface]:
    """Interfaces whose addresses belong in the pool: at ``first-interface-index`` or above and not
    carrying every ``exclude-interface-tags`` tag; by device index."""
    return sorted(
        (
            e
            for e in enis
            if e.number >= spec.first_interface_index
            and not matches_all(e.tags, spec.exclude_interface_tags)
        ),
        key=lambda e: e.number,
    )


def pool_of(enis: Iterable[Interface], spec: NodeSpec) -> dict[str, str]:
    """``spec.ipam.pool``: every usable interface's secondary address -> the interface id
    (its ``resource``)."""
    return {ip: e.id for e in usable_interfaces(enis, spec) for ip in e.addresses}


def candidate_subnets(
    subnets: Iterable[Subnet],
    spec: NodeSpec,
    *,
    ids_filter: Sequence[str] = (),
    tags_filter: Tags = (),
) -> list[Subnet]:
    """Subnets new interfaces may use, most free addresses first: ``subnet-ids`` take priority
    over ``subnet-tags`` (all must match); with neither, every subnet of the node's VPC and
    availability zone. The operator's ``subnet-ids-filter``/``subnet-tags-filter`` narrow it."""
    out = []
    for s in subnets:
        if spec.vpc_id and s.vpc_id != spec.vpc_id:
            continue
        if spec.availability_zone and s.availability_zone != spec.availability_zone:
            continue
        if spec.subnet_ids:
            if s.id not in spec.subnet_ids:
                continue
        elif spec.subnet_tags and not matches_all(s.tags, spec.subnet_tags):
            continue
        if ids_filter and s.id not in ids_filter:
            continue
        if tags_filter and not matches_all(s.tags, tags_filter):
            continue
        out.append(s)
    return sorted(out, key=lambda s: (-s.available, s.id))


def security_groups_for(
    spec: NodeSpec, groups: Iterable[SecurityGroup], enis: Iterable[Interface]
) -> tuple[str, ...]:
    """``security-groups``; else the groups of the VPC carrying all ``security-group-tags``;
    else those of the instance's primary interface (eth0), as upstream."""
    if spec.security_groups:
        return tuple(spec.security_groups)
    if spec.security_group_tags:
        return tuple(
            sorted(
                g.id
                for g in groups
                if (not spec.vpc_id or g.vpc_id == spec.vpc_id)
                and matches_all(g.tags, spec.security_group_tags)
            )
        )
    for e in enis:
        if e.number == 0:
            return e.security_groups
    return ()


# -- allocation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssignIPs:
    """``count`` more addresses on an existing interface (EC2/ECS AssignPrivateIpAddresses,
    Azure: more IP configurations on the NIC)."""

    eni_id: str
    count: int


@dataclass(frozen=True, slots=True)
class CreateInterface:
    """CreateNetworkInterface with ``count`` secondary IPs, attached at device ``index``."""

    index: int
    subnet_id: str
    count: int
    security_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    needed: int
    """IPs the watermarks ask for (before max-above-watermark)."""
    assign: tuple[AssignIPs, ...] = ()
    create: tuple[CreateInterface, ...] = ()
    error: str = ""
    """Why the plan covers less than ``needed`` (instance limits, no subnet, ...)."""

    @property
    def total(self) -> int:
        return sum(a.count for a in self.assign) + sum(c.count for c in self.create)


def capacity(enis: Iterable[Interface], spec: NodeSpec, limits: Limits) -> int:
    """Pod IPs the instance could still get: free slots on usable interfaces plus whole new
    ones."""
    enis = list(enis)
    used_indexes = {e.number for e in enis}
    free_on_existing = sum(
        max(limits.ipv4 - 1 - len(e.addresses), 0) for e in usable_interfaces(enis, spec)
    )
    new_slots = [
        i
        for i in range(max(spec.first_interface_index, 0), limits.adapters)
        if i not in used_indexes
    ]
    return free_on_existing + len(new_slots) * (limits.ipv4 - 1)


def plan_allocation(
    *,
    spec: NodeSpec,
    watermarks: Watermarks,
    limits: Limits | None,
    enis: Sequence[Interface],
    used: int,
    subnets: Sequence[Subnet],
    security_groups: tuple[str, ...],
    subnet_ids_filter: Sequence[str] = (),
    subnet_tags_filter: Tags = (),
    create_interfaces: bool = True,
) -> AllocationPlan:
    """How to bring the node's pool up to its watermark: the IPs it needs plus
    ``max-above-watermark``, existing interfaces first (lowest device index first), then new
    ones at the lowest free device indexes (unless ``create_interfaces`` is false: Azure
    IPAM never creates NICs); never beyond the instance type's limits or ``max-allocate``.
    ``enis`` are all the instance's attached interfaces."""
    available = len(pool_of(enis, spec))
    needed = needed_ips(available, used, watermarks)
    if needed == 0:
        return AllocationPlan(needed=0)
    if limits is None:
        return AllocationPlan(
            needed=needed,
            error=f"unable to determine limits of instance type {spec.instance_type!r}",
        )
    want = needed + watermarks.max_above_watermark
    if watermarks.max_allocate > 0:
        want = min(want, max(watermarks.max_allocate - available, 0))
    remaining = want
    assign: list[AssignIPs] = []
    subnet_free = {s.id: s.available for s in subnets}
    for e in usable_interfaces(enis, spec):
        if remaining == 0:
            break
        room = min(max(limits.ipv4 - 1 - len(e.addresses), 0), subnet_free.get(e.subnet_id, 0))
        take = min(room, remaining)
        if take > 0:
            assign.append(AssignIPs(e.id, take))
            subnet_free[e.subnet_id] = subnet_free.get(e.subnet_id, 0) - take
            remaining -= take
    create: list[CreateInterface] = []
    error = ""
    if remaining > 0 and not create_interfaces:
        error = (
            f"instance {spec.instance_id} ({spec.instance_type}) reached its limits: "
            f"{limits.ipv4} addresses on each of its {len(usable_interfaces(enis, spec))} "
            f"usable interfaces and no new interfaces in {spec.spec_key} IPAM; "
            f"{remaining} of {want} IPs could not be allocated"
        )
    elif remaining > 0:
        used_indexes = {e.number for e in enis}
        free_indexes = [
            i
            for i in range(max(spec.first_interface_index, 0), limits.adapters)
            if i not in used_indexes
        ]
        candidates = candidate_subnets(
            subnets, spec, ids_filter=subnet_ids_filter, tags_filter=subnet_tags_filter
        )
        for index in free_indexes:
            if remaining == 0:
                break
            ranked = sorted(candidates, key=lambda s: (-subnet_free.get(s.id, 0), s.id))
            # The new interface's primary address comes out of the subnet too.
            best = next((s for s in ranked if subnet_free.get(s.id, 0) >= 2), None)
            if best is None:
                error = (
                    "no subnet with free addresses matches "
                    + _subnet_selector(spec)
                    + f" in {spec.vpc_id or 'any VPC'}/{spec.availability_zone or 'any AZ'}"
                )
                break
            take = min(limits.ipv4 - 1, remaining, subnet_free[best.id] - 1)
            create.append(CreateInterface(index, best.id, take, security_groups))
            subnet_free[best.id] -= take + 1
            remaining -= take
        if remaining > 0 and not error:
            error = (
                f"instance {spec.instance_id} ({spec.instance_type}) reached its limits: "
                f"{limits.adapters} interfaces of {limits.ipv4} IPv4 addresses each "
                f"(first-interface-index {spec.first_interface_index}); "
                f"{remaining} of {want} IPs could not be allocated"
            )
    return AllocationPlan(needed=needed, assign=tuple(assign), create=tuple(create), error=error)


def _subnet_selector(spec: NodeSpec) -> str:
    if spec.subnet_ids:
        return spec.subnet_words[0] + " " + ",".join(spec.subnet_ids)
    if spec.subnet_tags:
        return spec.subnet_words[1] + " " + ",".join(f"{k}={v}" for k, v in spec.subnet_tags)
    return "the node's VPC and availability zone"


# -- release ---------------------------------------------------------------------------------


def plan_release(
    *, spec: NodeSpec, watermarks: Watermarks, enis: Sequence[Interface], used: Iterable[str]
) -> tuple[str, list[str]]:
    """Upstream ``PrepareIPRelease``: the interface holding the most unused addresses and up to the
    excess of them (highest addresses first). ("", []) when nothing is in excess."""
    in_use = set(used)
    pool = pool_of(enis, spec)
    excess = excess_ips(len(pool), len(in_use & set(pool)), watermarks)
    if excess == 0:
        return "", []
    best: tuple[int, str, list[str]] | None = None
    for e in usable_interfaces(enis, spec):
        free = [ip for ip in e.addresses if ip not in in_use]
        if free and (best is None or len(free) > best[0]):
            best = (len(free), e.id, free)
    if best is None:
        return "", []
    free = sorted(best[2], key=_ip_key, reverse=True)
    return best[1], free[:excess]


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ip.split("."))


class ReleaseState:
    """Values of ``status.ipam.release-ips`` (the agent/operator handshake)."""

    MARKED = "marked-for-release"
    READY = "ready-for-release"
    DO_NOT_RELEASE = "do-not-release"
    RELEASED = "released"


@dataclass(slots=True)
class ReleaseStep:
    """What the operator does for one node in one pass of the release handshake."""

    mark: list[str] = field(default_factory=list)
    """Excess IPs past their grace period: set ``marked-for-release``."""
    release: list[str] = field(default_factory=list)
    """IPs the agent declared ``ready-for-release``: unassign them, then ``released``."""
    unmark: list[str] = field(default_factory=list)
    """Entries to drop (``do-not-release``, or no longer excess and not yet answered)."""
    first_seen: dict[str, float] = field(default_factory=dict)
    """Excess IPs -> when they were first seen in excess (the grace period's start)."""


def release_step(
    *,
    candidates: Sequence[str],
    release_ips: Mapping[str, str],
    first_seen: Mapping[str, float],
    now: float,
    delay: float,
) -> ReleaseStep:
    """One pass of upstream's release handshake for a node: an excess IP is marked once it
    stayed in excess ``delay`` seconds (``excess-ip-release-delay``); the agent answers
    ``ready-for-release`` (not in use: it will not hand it out) or ``do-not-release``; ready
    ones are released. ``candidates`` are this pass's excess IPs (:func:`plan_release`)."""
    step = ReleaseStep()
    for ip in candidates:
        step.first_seen[ip] = first_seen.get(ip, now)
    for ip, state in sorted(release_ips.items()):
        if state == ReleaseState.READY:
            step.release.append(ip)
        elif state == ReleaseState.DO_NOT_RELEASE:
            step.unmark.append(ip)
            step.first_seen.pop(ip, None)
        elif state == ReleaseState.MARKED and ip not in candidates:
            step.unmark.append(ip)
    for ip in candidates:
        if ip in release_ips:
            continue
        if now - step.first_seen[ip] >= delay:
            step.mark.append(ip)
    return step
