"""L5: the guard against changing the IPAM mode of a live cluster.

The mode the operator runs with is recorded in the store (``ipam/mode``). Starting with another
mode while CiliumNodes hold allocations from the old one is refused — the seeds call it
dangerous: pods keep addresses the new mode knows nothing about — and the error goes into
every CiliumNode's ``status.ipam.operator-status.error``. ``--force-ipam-mode-change`` accepts
it anyway (with a warning); without allocations the change is accepted silently.
"""

from __future__ import annotations

import logging
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Compare, Put, Store

log = logging.getLogger(__name__)

MODE_KEY = "ipam/mode"


def _holds_allocations(body: dict[str, Any]) -> bool:
    ipam = (body.get("spec") or {}).get("ipam") or {}
    return bool(
        ipam.get("podCIDRs") or (ipam.get("pools") or {}).get("allocated") or ipam.get("pool")
    )


def guard(store: Store, mode: str, *, force: bool = False) -> str:
    """ "" when the operator may run IPAM in ``mode``; otherwise the error to report."""
    kv = store.get(MODE_KEY)
    if kv is None:
        store.commit([Compare(MODE_KEY, 0)], [Put(MODE_KEY, mode.encode())])
        return ""
    previous = kv.value.decode()
    if previous == mode:
        return ""
    nodes, _ = ResourceClient(store).list("CiliumNode")
    holders = [n.name for n in nodes if _holds_allocations(dict(n.body))]
    if holders and not force:
        return (
            f"IPAM mode change from {previous} to {mode} refused: nodes {', '.join(holders)} "
            "hold allocations, and changing the IPAM mode of a live cluster breaks pod "
            "connectivity (migrate nodes one by one, or pass --force-ipam-mode-change)"
        )
    if holders:
        log.warning("IPAM mode changed from %s to %s by force", previous, mode)
    store.commit([Compare(MODE_KEY, kv.mod_revision)], [Put(MODE_KEY, mode.encode())])
    return ""


def report(store: Store, error: str) -> None:
    """Write ``error`` into every CiliumNode's operator status."""
    client = ResourceClient(store)

    def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
        if body is None:
            return None
        body.setdefault("status", {}).setdefault("ipam", {})["operator-status"] = {"error": error}
        return body

    for node in client.list("CiliumNode")[0]:
        client.mutate("CiliumNode", node.name, fn=update)
