"""L5: the operator's node garbage collector: the state a node leaves behind in the store
once it is removed from the cluster (its Node and CiliumNode deleted, no heartbeat).

Upstream's operator garbage-collects the CiliumEndpoints of vanished nodes; here the node's
IP allocations (``ipam/<node>/``), endpoint records (``endpoints/<node>/``) and identity
references (``identities/refs/<id>/<node>``, so that the identity GC can collect what only
that node used) go with them. The node's pod CIDR needs nothing: the CIDR allocator rebuilds
its occupancy from the CiliumNodes, so the CIDR is free once the CiliumNode is gone, and the
other agents drop the node's routes, ipcache entries and health probes when its CiliumNode
disappears from their watch.

A node counts as removed only when it has neither Node, CiliumNode nor heartbeat: an agent
registers both resources before it writes any of this state.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from pylium.adapters.identities import REFS_PREFIX
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Delete, Store
from pylium.runtime.nodekeys import ALLOCATIONS_PREFIX, HEARTBEAT_PREFIX, RECORDS_PREFIX

log = logging.getLogger(__name__)

TXN_OPS = 100
"""Deletes per transaction (etcd refuses more than 128 operations in one by default)."""


def _node_of(key: str, prefix: str) -> str:
    return key[len(prefix) :].split("/", 1)[0]


def _allocation_owner(key: str) -> str | None:
    """The node of an IP allocation, ``ipam/<node>/<ip>``; None for the operator's own keys
    that share the prefix (``ipam/mode``, ``ipam/cluster-pool/accepted``), which must stay."""
    parts = key[len(ALLOCATIONS_PREFIX) :].split("/")
    if len(parts) != 2:
        return None
    try:
        ipaddress.ip_address(parts[1])
    except ValueError:
        return None
    return parts[0]


class NodeGC:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.client = ResourceClient(store)

    def _delete(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), TXN_OPS):
            self.store.commit([], [Delete(k) for k in keys[i : i + TXN_OPS]])

    def run_once(self) -> dict[str, int]:
        """One pass; returns, per removed node, how many keys and CiliumEndpoints went."""
        live = {r.name for r in self.client.list("Node")[0]}
        live |= {r.name for r in self.client.list("CiliumNode")[0]}
        live |= {
            _node_of(kv.key, HEARTBEAT_PREFIX) for kv in self.store.list(HEARTBEAT_PREFIX).items
        }
        stale: dict[str, list[str]] = {}
        for kv in self.store.list(ALLOCATIONS_PREFIX).items:
            owner = _allocation_owner(kv.key)
            if owner is not None and owner not in live:
                stale.setdefault(owner, []).append(kv.key)
        for kv in self.store.list(RECORDS_PREFIX).items:
            node = _node_of(kv.key, RECORDS_PREFIX)
            if node not in live:
                stale.setdefault(node, []).append(kv.key)
        for kv in self.store.list(REFS_PREFIX).items:
            node = kv.key.rsplit("/", 1)[-1]
            if node not in live:
                stale.setdefault(node, []).append(kv.key)
        endpoints: dict[str, list[tuple[str, str]]] = {}
        for cep in self.client.list("CiliumEndpoint")[0]:
            owner = ((cep.body.get("status") or {}).get("networking") or {}).get("node")
            if owner and owner not in live:
                endpoints.setdefault(str(owner), []).append((cep.name, cep.namespace))
        removed: dict[str, int] = {}
        for node in sorted(set(stale) | set(endpoints)):
            self._delete(stale.get(node, []))
            for name, namespace in endpoints.get(node, []):
                self.client.delete("CiliumEndpoint", name, namespace)
            removed[node] = len(stale.get(node, [])) + len(endpoints.get(node, []))
            log.info(
                "garbage-collected the state of removed node %s",
                node,
                extra={"node": node, "objects": removed[node]},
            )
        return removed
