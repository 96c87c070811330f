"""L5: the operator's multi-pool controller: CIDR chunks of each CiliumPodIPPool for each node.

Each pass reads the pools and every CiliumNode's ``spec.ipam.pools.requested`` (written by its
agent) and ``allocated`` (written here), rebuilds each pool's occupancy from what nodes hold,
and writes the decisions of :func:`pylium.core.ipam.multipool.plan_chunks`: chunks added
until a node's need is covered, unused chunks taken back. Exhaustion is reported in
``status.ipam.operator-status.error``.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import CIDRSet
from pylium.core.ipam.multipool import ChunkDecision, NodePoolState, plan_chunks
from pylium.model.resource import Resource

log = logging.getLogger(__name__)


def _pool_state(node: Resource, pool: str) -> NodePoolState:
    ipam = (node.body.get("spec", {}) or {}).get("ipam", {}) or {}
    pools = ipam.get("pools") or {}
    needed = sum(
        int((r.get("needed") or {}).get("ipv4-addrs", 0))
        for r in pools.get("requested") or []
        if r.get("pool") == pool
    )
    chunks = tuple(
        ipaddress.ip_network(c)
        for a in pools.get("allocated") or []
        if a.get("pool") == pool
        for c in a.get("cidrs") or []
    )
    used = (node.body.get("status", {}) or {}).get("ipam", {}).get("used") or {}
    used_ips = frozenset(
        ipaddress.ip_address(ip)
        for ip, entry in used.items()
        if entry.get("pool", "default") == pool
    )
    return NodePoolState(node.name, chunks, needed, used_ips)


class MultiPoolController:
    def __init__(self, store: Store) -> None:
        self.client = ResourceClient(store)

    def reconcile(self) -> dict[str, list[ChunkDecision]]:
        pools, _ = self.client.list("CiliumPodIPPool")
        nodes, _ = self.client.list("CiliumNode")
        allocated: dict[str, dict[str, list[str]]] = {n.name: {} for n in nodes}
        errors: dict[str, list[str]] = {n.name: [] for n in nodes}
        out: dict[str, list[ChunkDecision]] = {}
        for pool in pools:
            spec = (pool.body.get("spec") or {}).get("ipv4")
            if not spec:
                continue
            try:
                cidrset = CIDRSet(
                    [ipaddress.ip_network(c) for c in spec["cidrs"]], int(spec["maskSize"])
                )
            except AllocationError as err:
                log.error("pool %s: %s", pool.name, err)
                continue
            decisions = plan_chunks(cidrset, [_pool_state(n, pool.name) for n in nodes])
            out[pool.name] = decisions
            for d in decisions:
                if d.chunks:
                    allocated[d.node][pool.name] = [str(c) for c in d.chunks]
                if d.error:
                    errors[d.node].append(f"pool {pool.name}: {d.error}")
        for node in nodes:
            self._write(node.name, allocated[node.name], "; ".join(errors[node.name]))
        return out

    def _write(self, node: str, allocated: dict[str, list[str]], error: str) -> None:
        entries = [{"pool": p, "cidrs": c} for p, c in sorted(allocated.items())]

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            pools = body.setdefault("spec", {}).setdefault("ipam", {}).setdefault("pools", {})
            pools["allocated"] = entries
            status = body.setdefault("status", {}).setdefault("ipam", {})
            if error:
                status["operator-status"] = {"error": error}
            else:
                status.pop("operator-status", None)
            return body

        self.client.mutate("CiliumNode", node, fn=update)
