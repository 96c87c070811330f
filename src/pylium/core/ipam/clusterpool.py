"""L2: cluster-pool rules (operator side): which pool configurations and changes are accepted,
overlap with the nodes' own network, and what each CiliumNode should get.

Rules (upstream's cluster-pool documentation and the seeds): the CIDR list may only grow by
appending; changing or removing an entry, or changing the mask size, is refused and the
operator keeps the configuration it accepted before. Each block loses its network and
broadcast address, so the longest mask is /30 (IPv4) or /126 (IPv6): /31 and /32 are refused,
/30 leaves two pod addresses and draws a warning recommending /29 or shorter. The mask can't
be shorter than a pool CIDR's own prefix, and an IPv6 pool may not be split into more than
2^16 blocks.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pylium.base import netaddr
from pylium.base.errors import AllocationError, ConfigError
from pylium.base.netaddr import Network
from pylium.core.ipam.cidrset import CIDRSet

RESERVED_PER_BLOCK = 2
"""Network and broadcast address of every block."""
MAX_MASK = 32 - RESERVED_PER_BLOCK
RECOMMENDED_MAX_MASK = MAX_MASK - 1
IPV6_MAX_MASK_DELTA = 16
"""For IPv6, mask size minus the pool's prefix length must be at most 16 (upstream)."""


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class PoolConfig:
    cidrs: tuple[Network, ...]
    mask_size: int

    @property
    def key(self) -> str:
        """The agent ConfigMap key of the list: ``cluster-pool-ipv4-cidr`` (or ipv6)."""
        version = self.cidrs[0].version if self.cidrs else 4
        return f"cluster-pool-ipv{version}-cidr"

    def to_json(self) -> dict[str, object]:
        return {"cidrs": [str(c) for c in self.cidrs], "mask-size": self.mask_size}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PoolConfig:
        cidrs = data.get("cidrs", [])
        mask = data.get("mask-size", 24)
        if not isinstance(cidrs, list) or not isinstance(mask, int):
            raise ConfigError("cluster-pool", f"malformed recorded configuration {dict(data)}")
        return cls(tuple(ipaddress.ip_network(c) for c in cidrs), mask)


@dataclass(frozen=True, slots=True)
class Verdict:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def problems(self) -> list[Problem]:
        return [Problem(Severity.ERROR, e) for e in self.errors] + [
            Problem(Severity.WARNING, w) for w in self.warnings
        ]


def check_config(config: PoolConfig) -> Verdict:
    """Whether a configuration can be used at all (on its own, ignoring history)."""
    errors: list[str] = []
    warnings: list[str] = []
    key, mask = config.key, config.mask_size
    mask_key = key.replace("-cidr", "-mask-size")
    if not config.cidrs:
        errors.append(f"{key} must be provided when using ClusterPool")
    versions = {c.version for c in config.cidrs}
    if len(versions) > 1:
        errors.append(f"{key} mixes IPv4 and IPv6 CIDRs: {', '.join(map(str, config.cidrs))}")
    bits = config.cidrs[0].max_prefixlen if config.cidrs else 32
    longest = bits - RESERVED_PER_BLOCK
    if mask > longest:
        errors.append(
            f"{mask_key} /{mask} leaves no pod addresses once the network and broadcast "
            f"addresses are reserved; use /{longest} or shorter"
        )
    elif mask == longest:
        warnings.append(
            f"{mask_key} /{mask} gives each node only {2 ** (bits - mask) - RESERVED_PER_BLOCK}"
            f" pod addresses; /{longest - 1} or shorter is recommended"
        )
    for cidr in config.cidrs:
        if mask < cidr.prefixlen:
            errors.append(
                f"{mask_key} /{mask} is shorter than the prefix of {cidr}: a node block must "
                "fit inside a pool CIDR"
            )
        elif cidr.version == 6 and mask - cidr.prefixlen > IPV6_MAX_MASK_DELTA:
            errors.append(
                f"{mask_key} /{mask} splits {cidr} into more than 2^{IPV6_MAX_MASK_DELTA} "
                f"blocks; use a mask of at most /{cidr.prefixlen + IPV6_MAX_MASK_DELTA}"
            )
    for a, b in netaddr.overlaps_within(config.cidrs):
        errors.append(f"{key} entries {a} and {b} overlap")
    return Verdict(tuple(errors), tuple(warnings))


def check_change(old: PoolConfig, new: PoolConfig) -> Verdict:
    """Whether ``new`` may replace the accepted ``old`` configuration."""
    errors: list[str] = []
    key = old.key
    for index, cidr in enumerate(old.cidrs):
        if index >= len(new.cidrs):
            errors.append(
                f"{key} entry {index} ({cidr}) was removed; existing entries must never be "
                "removed (only appending is allowed)"
            )
        elif new.cidrs[index] != cidr:
            errors.append(
                f"{key} entry {index} changed from {cidr} to {new.cidrs[index]}; existing "
                "entries must never change (only appending is allowed)"
            )
    if new.mask_size != old.mask_size:
        errors.append(
            f"{key.replace('-cidr', '-mask-size')} changed from /{old.mask_size} to "
            f"/{new.mask_size}; it cannot change after deployment"
        )
    base = check_config(new)
    return Verdict(tuple(errors) + base.errors, base.warnings)


def check_pool_change(
    old_cidrs: Sequence[Network], old_mask: int, new_cidrs: Sequence[Network], new_mask: int
) -> list[Problem]:
    """:func:`check_change` as a list of problems (errors first); empty when accepted."""
    return check_change(
        PoolConfig(tuple(old_cidrs), old_mask), PoolConfig(tuple(new_cidrs), new_mask)
    ).problems()


def check_overlap(pools: Iterable[Network], node_networks: Iterable[Network]) -> tuple[str, ...]:
    """Pod pools overlapping the nodes' own networks, each with the fix."""
    return tuple(
        f"pod CIDR pool {pool} overlaps the node network {net}: traffic to other nodes would "
        "be taken for local pod traffic and misrouted; choose a cluster-pool-ipv4-cidr that "
        "does not overlap the nodes' networks (append it: existing entries cannot change), "
        "or move the nodes to a network outside the pool"
        for pool, net in netaddr.overlapping_pairs(pools, node_networks)
    )


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
    """Decisions for every node (sorted by name), updating ``cidrset``, which is restored
    first from what the nodes hold.

    A node gets a block when it has none, and another when all its blocks are depleted;
    released blocks return to the pool. A block outside the pool, or one that another node
    (earlier by name) also holds, is kept (it may carry live pods) but reported. Exhaustion is
    reported per node, never silently ignored.
    """
    ordered = sorted(nodes, key=lambda n: n.name)
    holder: dict[Network, str] = {}
    errors: dict[str, str] = {}
    for node in ordered:
        for cidr in node.pod_cidrs:
            if cidr in holder:
                errors.setdefault(
                    node.name, f"pod CIDR {cidr} is also allocated to node {holder[cidr]}"
                )
                continue
            holder[cidr] = node.name
            if cidrset.contains(cidr):
                cidrset.occupy(cidr)
            else:
                errors.setdefault(
                    node.name,
                    f"pod CIDR {cidr} is not part of the cluster pool "
                    f"({', '.join(map(str, cidrset.pools))})",
                )
    # Releases first, so that a block one node gives back can serve another in the same pass.
    kept: dict[str, tuple[Network, ...]] = {}
    for node in ordered:
        status = node.cidr_status
        kept[node.name] = tuple(
            c for c in node.pod_cidrs if status.get(str(c)) != CIDRStatus.RELEASED
        )
        for cidr in node.pod_cidrs:
            if cidr not in kept[node.name] and holder.get(cidr) == node.name:
                cidrset.release(cidr)
    decisions = []
    for node in ordered:
        keep = kept[node.name]
        needs_more = not keep or all(
            node.cidr_status.get(str(c)) == CIDRStatus.DEPLETED for c in keep
        )
        error = errors.get(node.name, "")
        if needs_more:
            try:
                keep = (*keep, cidrset.allocate())
            except AllocationError as err:
                error = err.reason
        decisions.append(NodeDecision(node.name, keep, error))
    return decisions
