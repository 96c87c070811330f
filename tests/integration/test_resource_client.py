"""ResourceClient on both store backends: apply semantics, CAS mutate, watch, batch delete."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from pylium.adapters.resources import ApplyAction, ResourceClient
from pylium.adapters.store import EventType, Store, Watch
from pylium.base.errors import StoreError
from pylium.model.resource import Resource, ResourceKey


def node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> Resource:
    return Resource(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNode",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": spec,
        }
    )


def pod(ns: str, name: str) -> Resource:
    return Resource(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
    )


def test_apply_creates_updates_and_reports_unchanged(store: Store) -> None:
    client = ResourceClient(store)
    first = client.apply([node("n1"), node("n2")])
    assert [r.action for r in first] == [ApplyAction.CREATED, ApplyAction.CREATED]
    again = client.apply([node("n1"), node("n2")])
    assert [r.action for r in again] == [ApplyAction.UNCHANGED, ApplyAction.UNCHANGED]
    changed = client.apply([node("n1", labels={"zone": "a"}), node("n2")])
    assert [r.action for r in changed] == [ApplyAction.CONFIGURED, ApplyAction.UNCHANGED]

    got = client.get("CiliumNode", "n1")
    assert got is not None
    assert got.labels == {"zone": "a"}
    assert got.metadata["generation"] == 1  # labels changed, spec did not
    assert client.get("CiliumNode", "missing") is None

    items, revision = client.list("CiliumNode")
    assert [r.name for r in items] == ["n1", "n2"]
    assert revision >= int(got.metadata["resourceVersion"])


def test_apply_keeps_controller_status(store: Store) -> None:
    client = ResourceClient(store)
    client.apply([node("n1", ipam={"podCIDRs": []})])

    def set_status(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        body["status"] = {"ipam": {"operator-status": {"error": "pool exhausted"}}}
        return body

    client.mutate("CiliumNode", "n1", fn=set_status)
    client.apply([node("n1", ipam={"podCIDRs": ["10.0.1.0/24"]})])
    got = client.get("CiliumNode", "n1")
    assert got is not None
    assert got.body["status"]["ipam"]["operator-status"]["error"] == "pool exhausted"
    assert got.body["spec"]["ipam"]["podCIDRs"] == ["10.0.1.0/24"]
    assert got.metadata["generation"] == 2


def test_namespaces_are_separate(store: Store) -> None:
    client = ResourceClient(store)
    client.apply([pod("a", "p"), pod("b", "p"), pod("b", "q")])
    assert [r.name for r in client.list("Pod", "b")[0]] == ["p", "q"]
    assert [(r.namespace, r.name) for r in client.list("Pod")[0]] == [
        ("a", "p"),
        ("b", "p"),
        ("b", "q"),
    ]
    existed = client.delete_many([ResourceKey("Pod", "a", "p"), ResourceKey("Pod", "a", "zz")])
    assert existed == [True, False]
    assert [r.namespace for r in client.list("Pod")[0]] == ["b", "b"]


def test_concurrent_mutations_never_lose_an_update(store: Store) -> None:
    client = ResourceClient(store)
    client.apply([node("counter", count=0)])

    def bump(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        body["spec"]["count"] += 1
        return body

    def worker() -> None:
        for _ in range(15):
            client.mutate("CiliumNode", "counter", fn=bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = client.get("CiliumNode", "counter")
    assert got is not None
    assert got.body["spec"]["count"] == 60


def test_watch_reports_typed_events(store: Store, collect: Callable[[Watch], Any]) -> None:
    client = ResourceClient(store)
    start = store.revision() + 1
    watch = client.watch("CiliumNode", start_revision=start)
    collector = collect(watch)  # type: ignore[arg-type]
    client.apply([node("n1")])
    client.mutate("CiliumNode", "n1", fn=lambda body: None)
    events = collector.take(2)
    assert [e.type for e in events] == [EventType.PUT, EventType.DELETE]
    assert events[0].key == ResourceKey("CiliumNode", "", "n1")
    assert events[0].resource is not None and events[0].resource.name == "n1"
    assert events[1].resource is None
    assert events[0].revision < events[1].revision


def test_stored_values_read_as_json_reads_them(store: Store) -> None:
    """What the quick decoder refuses (integers beyond 64 bits, NaN) still reads as before;
    a value that is no JSON at all is a StoreError naming its key."""
    client = ResourceClient(store)
    key = client.key_of(ResourceKey("CiliumNode", "", "n1"))
    store.put(
        key,
        b'{"kind": "CiliumNode", "metadata": {"name": "n1"}, "spec": {"big": '
        b'123456789012345678901234567890, "nan": NaN, "ok": [1, "x"]}}',
    )
    got = client.get("CiliumNode", "n1")
    assert got is not None
    spec = got.body["spec"]
    assert spec["big"] == 123456789012345678901234567890
    assert spec["nan"] != spec["nan"]
    assert spec["ok"] == [1, "x"]
    store.put(key, b"{not json")
    with pytest.raises(StoreError, match="not JSON"):
        client.get("CiliumNode", "n1")
