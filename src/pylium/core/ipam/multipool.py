"""L2: multi-pool IPAM rules: which pool a pod draws from, and which CIDR chunks of each
CiliumPodIPPool a node holds.

Pool selection (upstream's order): the pod's ``ipam.cilium.io/ip-pool`` (or
``ipam.cilium.io/ipv4-pool``) annotation, then its namespace's, then the pool named
``default``. A pool that does not exist falls back to ``default`` unless
``ipam.cilium.io/require-pool-match: "true"`` is set on the pod or namespace.

Chunks: a node asks for ``needed`` addresses per pool (its agent keeps used + pre-allocation);
the operator gives chunks of the pool's ``maskSize`` until the node's usable capacity covers
the need, and takes back chunks that hold no allocation while the rest still cover it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import CIDRSet, Network

POOL_ANNOTATIONS = ("ipam.cilium.io/ip-pool", "ipam.cilium.io/ipv4-pool")
REQUIRE_MATCH_ANNOTATION = "ipam.cilium.io/require-pool-match"
DEFAULT_POOL = "default"


def select_pool(
    pod_annotations: Mapping[str, str],
    namespace_annotations: Mapping[str, str],
    pools: Collection[str],
) -> str:
    """The pool a pod draws from; AllocationError when a required match fails."""
    required = any(
        a.get(REQUIRE_MATCH_ANNOTATION, "").lower() == "true"
        for a in (pod_annotations, namespace_annotations)
    )
    for source, found in (("pod", pod_annotations), ("namespace", namespace_annotations)):
        for key in POOL_ANNOTATIONS:
            name = found.get(key)
            if not name:
                continue
            if name in pools:
                return name
            if required:
                raise AllocationError(
                    name,
                    f"the {source} annotation {key} names a pool that does not exist "
                    f"(and {REQUIRE_MATCH_ANNOTATION} is true)",
                )
            return _default(pools)
    return _default(pools)


def _default(pools: Collection[str]) -> str:
    if DEFAULT_POOL not in pools:
        raise AllocationError(DEFAULT_POOL, "no pool named default exists (CiliumPodIPPool)")
    return DEFAULT_POOL


def usable(chunk: Network) -> int:
    """Addresses a chunk gives pods: its first and last are reserved (blocks of 2 or fewer
    addresses are exempt, as upstream)."""
    return chunk.num_addresses if chunk.num_addresses <= 2 else chunk.num_addresses - 2


@dataclass(frozen=True, slots=True)
class NodePoolState:
    node: str
    chunks: tuple[Network, ...]
    needed: int
    used_ips: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()


@dataclass(frozen=True, slots=True)
class ChunkDecision:
    node: str
    chunks: tuple[Network, ...]
    error: str = ""


def plan_chunks(cidrset: CIDRSet, nodes: Sequence[NodePoolState]) -> list[ChunkDecision]:
    """Chunks per node for one pool (``cidrset`` is restored from ``nodes`` first)."""
    for state in nodes:
        for chunk in state.chunks:
            if cidrset.contains(chunk):
                cidrset.occupy(chunk)
    # Shrink first, so that freed chunks can serve growing nodes in the same pass.
    kept: dict[str, list[Network]] = {}
    for state in nodes:
        chunks = list(state.chunks)
        for chunk in sorted(chunks, reverse=True):
            in_use = any(ip in chunk for ip in state.used_ips)
            rest = sum(usable(c) for c in chunks) - usable(chunk)
            if not in_use and rest >= state.needed:
                chunks.remove(chunk)
                cidrset.release(chunk)
        kept[state.node] = chunks
    decisions = []
    for state in sorted(nodes, key=lambda s: s.node):
        chunks = kept[state.node]
        error = ""
        while sum(usable(c) for c in chunks) < state.needed:
            try:
                chunks.append(cidrset.allocate())
            except AllocationError as err:
                error = err.reason
                break
        decisions.append(ChunkDecision(state.node, tuple(chunks), error))
    return decisions
