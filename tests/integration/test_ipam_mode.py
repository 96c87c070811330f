"""Changing the IPAM mode of a live cluster is refused (and reported on every CiliumNode)
unless forced; without allocations it is accepted."""

from __future__ import annotations

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store
from pylium.model.resource import Resource
from pylium.operator import ipam_mode


def node(name: str, cidrs: list[str]) -> Resource:
    return Resource(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNode",
            "metadata": {"name": name},
            "spec": {"ipam": {"podCIDRs": cidrs}},
        }
    )


def test_mode_change_guard(store: Store) -> None:
    client = ResourceClient(store)
    client.apply([node("n1", []), node("n2", [])])
    assert ipam_mode.guard(store, "cluster-pool") == ""
    assert ipam_mode.guard(store, "multi-pool") == ""  # nothing allocated yet: accepted
    assert ipam_mode.guard(store, "cluster-pool") == ""
    client.apply([node("n1", ["10.0.1.0/24"]), node("n2", [])])

    error = ipam_mode.guard(store, "kubernetes")
    assert "from cluster-pool to kubernetes refused" in error and "n1" in error
    assert "n2" not in error.split("refused")[1].split("hold")[0]
    ipam_mode.report(store, error)
    for name in ("n1", "n2"):
        got = client.get("CiliumNode", name)
        assert got is not None
        assert got.body["status"]["ipam"]["operator-status"]["error"] == error
    assert ipam_mode.guard(store, "cluster-pool") == ""  # the old mode still runs

    assert ipam_mode.guard(store, "kubernetes", force=True) == ""
    assert ipam_mode.guard(store, "kubernetes") == ""
    kv = store.get(ipam_mode.MODE_KEY)
    assert kv is not None and kv.value == b"kubernetes"
