"""Operator high availability against both real stores: leader election with presence keys,
hand-over when the leader's lease goes, the fence that stops a deposed leader's writes, and
the node garbage collector that clears a removed node's state."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store
from pylium.model.resource import Resource
from pylium.operator.nodegc import NodeGC
from pylium.runtime.leader import FencedStore, LeaderElector, NotLeaderError

KEY = "operator/leader"
PRESENCE = "operator/instances/"


def elector(
    store: Store, identity: str, clock: Callable[[], float] = time.monotonic
) -> LeaderElector:
    return LeaderElector(
        store, key=KEY, identity=identity, ttl=2, presence_prefix=PRESENCE, clock=clock
    )


def test_one_leads_the_other_takes_over_when_its_lease_goes(store: Store) -> None:
    a, b = elector(store, "op-a"), elector(store, "op-b")
    assert a.try_acquire()
    assert not b.try_acquire()
    assert a.try_acquire()  # renewing keeps it
    assert {kv.key for kv in store.list(PRESENCE).items} == {PRESENCE + "op-a", PRESENCE + "op-b"}
    assert a.current_leader() == "op-a"
    store.revoke(a.lease)  # what expiry does to a killed leader's lease
    assert b.try_acquire()
    assert b.current_leader() == "op-b"
    assert {kv.key for kv in store.list(PRESENCE).items} == {PRESENCE + "op-b"}
    assert not a.try_acquire()  # it comes back as a candidate, with a new lease and presence
    assert not a.is_leader
    assert {kv.key for kv in store.list(PRESENCE).items} == {PRESENCE + "op-a", PRESENCE + "op-b"}
    b.resign()
    assert store.get(KEY) is None
    assert a.try_acquire()


def test_a_deposed_leader_cannot_write_through_the_fence(store: Store) -> None:
    a, b = elector(store, "op-a"), elector(store, "op-b")
    assert a.try_acquire()
    fenced = FencedStore(store, a)
    fenced.put("ipam/x", b"1")
    assert store.get("ipam/x") is not None
    store.revoke(a.lease)
    assert b.try_acquire()
    assert a.is_leader  # it has not noticed yet: only the fence stops it
    with pytest.raises(NotLeaderError):
        fenced.put("ipam/y", b"2")
    with pytest.raises(NotLeaderError):
        ResourceClient(fenced).apply(
            [Resource({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "z"}})]
        )
    assert store.get("ipam/y") is None
    assert ResourceClient(store).get("Node", "z") is None
    FencedStore(store, b).put("ipam/y", b"3")
    assert store.get("ipam/y") is not None


def test_a_leader_not_renewed_in_time_steps_down_on_its_own(store: Store) -> None:
    now = [100.0]
    a = elector(store, "op-a", clock=lambda: now[0])
    assert a.try_acquire() and a.is_leader
    now[0] += a.ttl - a.period + 0.01  # frozen for nearly as long as its lease lasts
    assert not a.is_leader
    with pytest.raises(NotLeaderError):
        FencedStore(store, a).put("ipam/x", b"1")


def test_node_gc_clears_only_removed_nodes(store: Store) -> None:
    client = ResourceClient(store)
    client.apply(
        [
            Resource({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            Resource(
                {"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": "n1"}}
            ),
        ]
    )
    for node in ("n1", "gone"):
        store.put(f"ipam/{node}/10.0.{len(node)}.5", b"default/p")
        store.put(f"endpoints/{node}/c{node}", b"{}")
        store.put(f"identities/refs/1234/{node}", b"1")
        client.apply(
            [
                Resource(
                    {
                        "apiVersion": "cilium.io/v2",
                        "kind": "CiliumEndpoint",
                        "metadata": {"name": f"pod-{node}", "namespace": "default"},
                        "status": {"networking": {"node": node}},
                    }
                )
            ]
        )
    lease = store.grant_lease(30)
    store.put("nodes/heartbeat/starting", b"x", lease=lease)  # beating: not removed
    store.put("ipam/starting/10.0.9.1", b"router")
    # The operator's own keys under ipam/ are nobody's allocations: they stay.
    store.put("ipam/mode", b"cluster-pool")
    store.put("ipam/cluster-pool/accepted", b"{}")
    assert NodeGC(store).run_once() == {"gone": 4}
    keys = {
        kv.key
        for prefix in ("ipam/", "endpoints/", "identities/refs/")
        for kv in store.list(prefix).items
    }
    assert keys == {
        "ipam/n1/10.0.2.5",
        "endpoints/n1/cn1",
        "identities/refs/1234/n1",
        "ipam/starting/10.0.9.1",
        "ipam/mode",
        "ipam/cluster-pool/accepted",
    }
    assert [r.name for r in client.list("CiliumEndpoint")[0]] == ["pod-n1"]
    assert NodeGC(store).run_once() == {}
