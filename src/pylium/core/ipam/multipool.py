"""L2: multi-pool IPAM rules: which pool a pod draws from, how many addresses a node asks for,
which CIDR chunks of each CiliumPodIPPool a node holds, and which pool edits are accepted.

Pool selection (upstream's order): the pod's ``ipam.cilium.io/ipv4-pool`` (``ipv6-pool``)
annotation, else its ``ipam.cilium.io/ip-pool``; then the same on its namespace; then the
pool named ``default``. A pool that does not exist falls back to ``default`` unless
``ipam.cilium.io/require-pool-match: "true"`` is set on the pod or namespace.

Chunks: the agent asks for ``needed`` addresses per pool (:func:`needed_ips`, the pre-allocation
watermark); the operator gives chunks of the pool's ``maskSize`` until the node's usable
capacity covers the need, and takes back chunks that hold no allocation while the rest still
cover it. The first and last address of each chunk are reserved unless the pool sets
``allowFirstIP``/``allowLastIP``; chunks of fewer than three addresses are exempt.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pylium.base import netaddr
from pylium.base.errors import AllocationError
from pylium.base.netaddr import Address, Network
from pylium.core.ipam.cidrset import CIDRSet
from pylium.core.ipam.hostscope import MULTI_POOL, Reservation

POOL_ANNOTATION = "ipam.cilium.io/ip-pool"
FAMILY_POOL_ANNOTATIONS = {4: "ipam.cilium.io/ipv4-pool", 6: "ipam.cilium.io/ipv6-pool"}
POOL_ANNOTATIONS = (POOL_ANNOTATION, FAMILY_POOL_ANNOTATIONS[4], FAMILY_POOL_ANNOTATIONS[6])
REQUIRE_MATCH_ANNOTATION = "ipam.cilium.io/require-pool-match"
DEFAULT_POOL = "default"
DEFAULT_PRE_ALLOCATE = 8
"""``multi-pool-node-pre-alloc`` for the default pool (upstream ``default=8``)."""


def _annotated(annotations: Mapping[str, str], family: int) -> tuple[str, str] | None:
    for key in (FAMILY_POOL_ANNOTATIONS[family], POOL_ANNOTATION):
        if annotations.get(key):
            return key, annotations[key]
    return None


def select_pool(
    pod_annotations: Mapping[str, str],
    namespace_annotations: Mapping[str, str],
    pools: Collection[str],
    *,
    family: int = 4,
) -> str:
    """The pool a pod draws from; AllocationError when a required match fails."""
    required = any(
        a.get(REQUIRE_MATCH_ANNOTATION, "").lower() == "true"
        for a in (pod_annotations, namespace_annotations)
    )
    for source, notes in (("pod", pod_annotations), ("namespace", namespace_annotations)):
        found = _annotated(notes, family)
        if found is None:
            continue
        key, name = found
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


def reservation(*, allow_first: bool = False, allow_last: bool = False) -> Reservation:
    """The addresses of a chunk kept from pods, given the pool's allowFirstIP/allowLastIP."""
    return Reservation(first=not allow_first, last=not allow_last, small_blocks_exempt=True)


def usable(chunk: Network, *, allow_first: bool = False, allow_last: bool = False) -> int:
    """Addresses a chunk gives pods."""
    return reservation(allow_first=allow_first, allow_last=allow_last).capacity(chunk)


def needed_ips(in_use: int, pre_allocate: int = DEFAULT_PRE_ALLOCATE, pending: int = 0) -> int:
    """What the agent writes in ``spec.ipam.pools.requested[].needed``: in-use plus pending
    addresses rounded up to the next-but-one multiple of the pre-allocation, so that at least
    ``pre_allocate`` addresses are always spare (0 -> 8, 1 -> 16, 8 -> 16, 9 -> 24 for 8)."""
    count = in_use + pending
    if pre_allocate <= 0:
        return count
    quotient, rest = divmod(count, pre_allocate)
    return (quotient + (2 if rest else 1)) * pre_allocate


@dataclass(frozen=True, slots=True)
class NodePoolState:
    node: str
    chunks: tuple[Network, ...]
    needed: int
    used_ips: frozenset[Address] = frozenset()


@dataclass(frozen=True, slots=True)
class ChunkDecision:
    node: str
    chunks: tuple[Network, ...]
    error: str = ""


def plan_chunks(
    cidrset: CIDRSet, nodes: Sequence[NodePoolState], *, reserve: Reservation = MULTI_POOL
) -> list[ChunkDecision]:
    """Chunks per node (sorted by name) for one pool; ``cidrset`` is restored from ``nodes``
    first."""
    for state in nodes:
        for chunk in state.chunks:
            if cidrset.contains(chunk):
                cidrset.occupy(chunk)
    # Shrink first, so that freed chunks can serve growing nodes in the same pass; the highest
    # chunks go first, keeping a node's addresses low and stable.
    kept: dict[str, list[Network]] = {}
    for state in nodes:
        chunks = list(state.chunks)
        for chunk in sorted(chunks, key=lambda c: (c.version, int(c.network_address)))[::-1]:
            in_use = any(netaddr.contains(chunk, ip) for ip in state.used_ips)
            rest = sum(reserve.capacity(c) for c in chunks) - reserve.capacity(chunk)
            if not in_use and rest >= state.needed:
                chunks.remove(chunk)
                cidrset.release(chunk)
        kept[state.node] = chunks
    decisions = []
    for state in sorted(nodes, key=lambda s: s.node):
        chunks = kept[state.node]
        error = ""
        while sum(reserve.capacity(c) for c in chunks) < state.needed:
            try:
                chunks.append(cidrset.allocate())
            except AllocationError as err:
                error = err.reason
                break
        decisions.append(ChunkDecision(state.node, tuple(chunks), error))
    return decisions


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One family of a CiliumPodIPPool's spec, plus its pool-wide first/last IP flags."""

    cidrs: tuple[Network, ...]
    mask_size: int
    allow_first_ip: bool = False
    allow_last_ip: bool = False


def check_pool_update(
    name: str, old: PoolSpec, new: PoolSpec, allocated: Iterable[Network] = ()
) -> list[str]:
    """Problems with replacing a pool's spec: the mask size and the first/last IP flags are
    immutable, and a CIDR that still has chunks on nodes must not be removed."""
    problems = []
    if new.mask_size != old.mask_size:
        problems.append(
            f"CiliumPodIPPool {name}: maskSize changed from /{old.mask_size} to "
            f"/{new.mask_size}; it is immutable"
        )
    for flag, before, after in (
        ("allowFirstIP", old.allow_first_ip, new.allow_first_ip),
        ("allowLastIP", old.allow_last_ip, new.allow_last_ip),
    ):
        if before != after:
            problems.append(f"CiliumPodIPPool {name}: {flag} is immutable")
    chunks = list(allocated)
    for cidr in old.cidrs:
        if cidr in new.cidrs:
            continue
        held = [c for c in chunks if netaddr.contains(cidr, c)]
        if held:
            problems.append(
                f"CiliumPodIPPool {name}: CIDR {cidr} cannot be removed while nodes hold "
                f"chunks of it ({', '.join(map(str, held))})"
            )
    return problems
