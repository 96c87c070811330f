"""L5: the operator's cluster-pool controller: CiliumNode ``spec.ipam.podCIDRs`` from the pool.

Each pass reads every CiliumNode, rebuilds the pool's occupancy from what the nodes hold (so the
operator keeps no state of its own and a new leader simply continues), and writes the
decisions of :func:`pylium.core.ipam.clusterpool.plan_nodes`. The configuration it allocates
from is the one it last *accepted*, recorded in the store: a later configuration that breaks
the rules (an entry changed or removed, the mask changed) is refused, the error goes into
every CiliumNode's ``status.ipam.operator-status.error`` and the log, and allocation continues
on the accepted one. The IPAM mode is recorded the same way; switching it under live
allocations is refused.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Compare, Put, Store
from pylium.core.ipam.cidrset import CIDRSet, Network
from pylium.core.ipam.clusterpool import (
    CIDRStatus,
    NodeDecision,
    NodeView,
    PoolConfig,
    check_change,
    check_config,
    check_overlap,
    plan_nodes,
)
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.model.resource import Resource

log = logging.getLogger(__name__)

ACCEPTED_KEY = "ipam/cluster-pool/accepted"


def node_view(resource: Resource) -> NodeView:
    ipam = resource.body.get("spec", {}).get("ipam", {}) or {}
    status = (resource.body.get("status", {}) or {}).get("ipam", {}) or {}
    cidrs: tuple[Network, ...] = tuple(ipaddress.ip_network(c) for c in ipam.get("podCIDRs", []))
    cidr_status = {
        cidr: CIDRStatus(entry.get("status", "in-use"))
        for cidr, entry in (status.get("pod-cidrs") or {}).items()
    }
    return NodeView(resource.name, cidrs, cidr_status)


def node_addresses(resource: Resource) -> list[Network]:
    out: list[Network] = []
    for addr in resource.body.get("spec", {}).get("addresses", []) or []:
        if addr.get("type") in ("InternalIP", "ExternalIP"):
            out.append(ipaddress.ip_network(addr["ip"]))
    return out


class NodeCIDRController:
    def __init__(self, store: Store, settings: OperatorSettings) -> None:
        self.store = store
        self.client = ResourceClient(store)
        self.settings = settings
        self.wanted = PoolConfig(
            tuple(settings.cluster_pool_ipv4_cidr), settings.cluster_pool_ipv4_mask_size
        )
        self._last_errors: tuple[str, ...] = ()

    def _config_errors(self, nodes: list[Resource]) -> tuple[PoolConfig | None, tuple[str, ...]]:
        """The configuration to allocate from, and the errors to report on every node."""
        kv = self.store.get(ACCEPTED_KEY)
        accepted = PoolConfig.from_json(json.loads(kv.value)) if kv else None
        verdict = (
            check_config(self.wanted) if accepted is None else check_change(accepted, self.wanted)
        )
        for warning in verdict.warnings:
            log.warning("cluster-pool: %s", warning)
        errors = list(verdict.errors)
        if verdict.ok and accepted != self.wanted:
            ok = self.store.commit(
                [Compare(ACCEPTED_KEY, kv.mod_revision if kv else 0)],
                [Put(ACCEPTED_KEY, json.dumps(self.wanted.to_json()).encode())],
            ).succeeded
            if ok:
                log.info("cluster-pool configuration accepted", extra=self.wanted.to_json())
                accepted = self.wanted
        node_nets = [n for r in nodes for n in node_addresses(r)]
        errors.extend(check_overlap((accepted or self.wanted).cidrs, node_nets))
        return accepted, tuple(errors)

    def reconcile(self) -> list[NodeDecision]:
        """One pass; returns the decisions (for tests and logs)."""
        nodes, _ = self.client.list("CiliumNode")
        if self.settings.ipam is not IPAMMode.CLUSTER_POOL:
            return []
        accepted, errors = self._config_errors(nodes)
        if errors != self._last_errors:
            for error in errors:
                log.error("cluster-pool: %s", error)
            self._last_errors = errors
        if accepted is None:
            decisions = [NodeDecision(r.name, node_view(r).pod_cidrs) for r in nodes]
        else:
            cidrset = CIDRSet(accepted.cidrs, accepted.mask_size)
            decisions = plan_nodes(cidrset, [node_view(r) for r in nodes])
        for decision in decisions:
            error = "; ".join(e for e in (*errors, decision.error) if e)
            self._write(decision, error)
        return decisions

    def _write(self, decision: NodeDecision, error: str) -> None:
        cidrs = [str(c) for c in decision.pod_cidrs]

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None  # the node went away meanwhile
            ipam = body.setdefault("spec", {}).setdefault("ipam", {})
            ipam["podCIDRs"] = cidrs
            status = body.setdefault("status", {}).setdefault("ipam", {})
            pod_cidrs = status.setdefault("pod-cidrs", {})
            for cidr in list(pod_cidrs):
                if cidr not in cidrs:
                    del pod_cidrs[cidr]
            for cidr in cidrs:
                pod_cidrs.setdefault(cidr, {"status": CIDRStatus.IN_USE.value})
            if error:
                status["operator-status"] = {"error": error}
            else:
                status.pop("operator-status", None)
            return body

        self.client.mutate("CiliumNode", decision.name, fn=update)
