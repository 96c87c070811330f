"""L2: cluster-pool rules (operator side): which pool configurations and changes are accepted,
overlap with the nodes' own network, and what each CiliumNode should get.

Rules (upstream's cluster-pool documentation and the seeds): the CIDR list may only grow by
appending; changing or removing an entry, or changing the mask size, is refused and the
operator keeps the configuration it accepted before; a block must leave pod addresses (masks
/31 and /32 are refused; /30 leaves two and draws a warning recommending /29 or shorter); the
mask can't be shorter than a pool CIDR's own prefix.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import CIDRSet, Network

MAX_MASK = 30
RECOMMENDED_MAX_MASK = 29


@dataclass(frozen=True, slots=True)
class PoolConfig:
    cidrs: tuple[Network, ...]
    mask_size: int

    def to_json(self) -> dict[str, object]:
        return {"cidrs": [str(c) for c in self.cidrs], "mask-size": self.mask_size}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PoolConfig:
        cidrs = data.get("cidrs", [])
        assert isinstance(cidrs, list)
        mask = data.get("mask-size", 24)
        assert isinstance(mask, int)
        return cls(tuple(ipaddress.ip_network(c) for c in cidrs), mask)


@dataclass(frozen=True, slots=True)
class Verdict:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def check_config(config: PoolConfig) -> Verdict:
    errors: list[str] = []
    warnings: list[str] = []
    if not config.cidrs:
        errors.append("cluster-pool-ipv4-cidr must be provided when using ClusterPool")
    if config.mask_size > MAX_MASK:
        errors.append(
            f"cluster-pool-ipv4-mask-size /{config.mask_size} leaves no pod addresses once the "
            f"network and broadcast addresses are reserved; use /{MAX_MASK} or shorter"
        )
    elif config.mask_size > RECOMMENDED_MAX_MASK:
        warnings.append(
            f"cluster-pool-ipv4-mask-size /{config.mask_size} gives each node only "
            f"{2 ** (32 - config.mask_size) - 2} pod addresses; /{RECOMMENDED_MAX_MASK} or "
            "shorter is recommended"
        )
    for cidr in config.cidrs:
        if config.mask_size < cidr.prefixlen:
            errors.append(
                f"cluster-pool-ipv4-mask-size /{config.mask_size} is shorter than the prefix of "
                f"{cidr}: a node block must fit inside a pool CIDR"
            )
    for i, a in enumerate(config.cidrs):
        for b in config.cidrs[i + 1 :]:
            if a.overlaps(b):
                errors.append(f"cluster-pool-ipv4-cidr entries {a} and {b} overlap")
    return Verdict(tuple(errors), tuple(warnings))


def check_change(old: PoolConfig, new: PoolConfig) -> Verdict:
    """Whether ``new`` may replace the accepted ``old`` configuration."""
    errors: list[str] = []
    for index, cidr in enumerate(old.cidrs):
        if index >= len(new.cidrs):
            errors.append(
                f"cluster-pool-ipv4-cidr entry {index} ({cidr}) was removed; existing entries "
                "must never be removed (only appending is allowed)"
            )
        elif new.cidrs[index] != cidr:
            errors.append(
                f"cluster-pool-ipv4-cidr entry {index} changed from {cidr} to {new.cidrs[index]};"
                " existing entries must never change (only appending is allowed)"
            )
    if new.mask_size != old.mask_size:
        errors.append(
            f"cluster-pool-ipv4-mask-size changed from /{old.mask_size} to /{new.mask_size}; "
            "it cannot change after deployment"
        )
    base = check_config(new)
    return Verdict(tuple(errors) + base.errors, base.warnings)


def check_overlap(pools: Iterable[Network], node_networks: Iterable[Network]) -> tuple[str, ...]:
    """Pod pools overlapping the nodes' own networks, each with the fix."""
    problems = []
    for pool in pools:
        for net in node_networks:
            if pool.version == net.version and pool.overlaps(net):
                problems.append(
                    f"pod CIDR pool {pool} overlaps the node network {net}: pod and node "
                    "addresses would collide and traffic would be misrouted; choose a "
                    "cluster-pool-ipv4-cidr that does not overlap the nodes' networks "
                    "(and append it; existing entries cannot change)"
                )
    return tuple(problems)


class CIDRStatus(enum.StrEnum):
    """``status.ipam.pod-cidrs[cidr].status`` as the agent reports it."""

    IN_USE = "in-use"
    DEPLETED = "depleted"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the operator reads of one CiliumNode."""

    name: str
    pod_cidrs: tuple[Network, ...]
    cidr_status: Mapping[str, CIDRStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeDecision:
    """What the operator writes for one CiliumNode: its podCIDRs and operator-status error."""

    name: str
    pod_cidrs: tuple[Network, ...]
    error: str = ""


def plan_nodes(cidrset: CIDRSet, nodes: Sequence[NodeView]) -> list[NodeDecision]:
    """Decisions for every node, updating ``cidrset`` (restored first from what nodes hold).

    A node gets a block when it has none, and another when all its blocks are depleted;
    released blocks return to the pool; a block outside the pool is kept (it may carry live
    pods) but reported. Exhaustion is reported per node, never silently ignored.
    """
    for node in nodes:
        for cidr in node.pod_cidrs:
            if cidrset.contains(cidr):
                cidrset.occupy(cidr)
    # Releases first, so that a block one node gives back can serve another in the same pass.
    kept: dict[str, tuple[Network, ...]] = {}
    for node in nodes:
        kept[node.name] = tuple(
            c for c in node.pod_cidrs if node.cidr_status.get(str(c)) != CIDRStatus.RELEASED
        )
        for cidr in node.pod_cidrs:
            if cidr not in kept[node.name]:
                cidrset.release(cidr)
    decisions = []
    for node in sorted(nodes, key=lambda n: n.name):
        keep = kept[node.name]
        foreign = [c for c in keep if not cidrset.contains(c)]
        needs_more = not keep or all(
            node.cidr_status.get(str(c)) == CIDRStatus.DEPLETED for c in keep
        )
        error = ""
        if needs_more:
            try:
                keep = (*keep, cidrset.allocate())
            except AllocationError as err:
                error = err.reason
        if foreign and not error:
            error = (
                f"pod CIDR {foreign[0]} is not part of the cluster pool "
                f"({', '.join(map(str, cidrset.pools))})"
            )
        decisions.append(NodeDecision(node.name, keep, error))
    return decisions
