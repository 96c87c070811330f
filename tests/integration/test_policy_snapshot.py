"""The policy snapshot read from a store (both backends): an incremental snapshot, which only
re-parses changed objects, resolves exactly like one built from scratch; its revision and
signature follow the writes; a Wakeup fires on resource changes."""

from __future__ import annotations

from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store
from pylium.core.policy.peers import Direction
from pylium.core.policy.resolve import PolicyConfig, Subject
from pylium.model import codec
from pylium.model.resource import Resource, ResourceKey
from pylium.runtime.policy import snapshot
from pylium.runtime.wakeup import Wakeup


def cnp(name: str, peer: str, namespace: str = "default") -> Resource:
    body: dict[str, Any] = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"fromEndpoints": [{"matchLabels": {"app": peer}}]}],
        },
    }
    return codec.validate(body)


WEB = Subject(300, frozenset({"k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"}))


def peers(snap: Any) -> list[str]:
    resolved = snap.repository.resolve(WEB, PolicyConfig())
    return sorted(str(c.selector) for c in resolved.direction(Direction.INGRESS).contributions)


def test_incremental_snapshot_matches_a_fresh_one(store: Store) -> None:
    client = ResourceClient(store)
    wake = Wakeup(store, client.root + "/").start()
    try:
        client.apply([cnp("a", "one"), cnp("b", "two")])
        first = snapshot(client, "default")
        assert any("app=one" in p for p in peers(first))
        assert wake.wait(5.0)  # the apply woke it

        client.apply([cnp("a", "three")])
        client.delete("CiliumNetworkPolicy", "b", "default")
        fresh_peers = peers(snapshot(client, "default"))
        second = snapshot(client, "default", first)
        assert peers(second) == fresh_peers
        assert any("app=three" in p for p in fresh_peers)
        assert not any("app=one" in p or "app=two" in p for p in fresh_peers)
        assert second.revision > first.revision and second.signature != first.signature
        live = [k for k in second.repository.keys() if second.repository.rules_of(k)]  # noqa: SIM118
        assert live == [ResourceKey("CiliumNetworkPolicy", "default", "a")]
        third = snapshot(client, "default", second)
        assert third.signature == second.signature
    finally:
        wake.stop()
