"""The agent's services engine on a real store with a recording stand-in for the BPF maps:
what it writes for Services and EndpointSlices, node exposure following the node's labels
without a restart, Services without a ClusterIP skipped, diffs only (an unchanged sync writes
nothing), bad objects reported instead of stopping the rest; changes arriving through the
store watches write only their own rows, rows of Services deleted while the agent was down go
at its first sync, and a refused map write is repaired by the next sync."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import pytest

from pylium.adapters.maps import lb as lbmaps
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import open_store
from pylium.agent.services import ServiceManager
from pylium.base.errors import DatapathError
from pylium.core.lb.translate import MapKind, Op, Rows
from pylium.model.resource import Resource


class RecordingMaps:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def apply(self, ops: Iterable[Op]) -> None:
        self.ops.extend(ops)


def engine_on(
    client: ResourceClient,
    tmp_path: Path,
    maps: object,
    kube_proxy_replacement: bool = False,
) -> ServiceManager:
    """A services engine of node n1 writing to ``maps`` (no socket-LB, no kernel)."""
    engine = ServiceManager(
        client,
        node="n1",
        node_addresses=(),
        bpf_root=tmp_path,
        cgroup_path=tmp_path,
        socket_lb=False,
        kube_proxy_replacement=kube_proxy_replacement,
    )
    engine.maps = cast(lbmaps.LBMaps, maps)
    return engine


def service(name: str, ip: str | None, annotations: dict[str, str] | None = None) -> Resource:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    if ip:
        spec["clusterIP"] = ip
    return Resource(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
            "spec": spec,
        }
    )


def endpoint_slice(service_name: str, ips: list[str]) -> Resource:
    return Resource(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service_name}-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": service_name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [ip], "nodeName": "n1"} for ip in ips],
        }
    )


def frontends(ops: list[Op]) -> set[str]:
    return {
        str(op.key.frontend)
        for op in ops
        if op.kind is MapKind.SERVICE and op.key.slot == 0 and op.value is not None
    }


def test_engine_writes_diffs_and_follows_node_labels(tmp_path: Path) -> None:
    store = open_store(f"local:{tmp_path / 'store.db'}")
    client = ResourceClient(store)
    client.apply(
        [
            Resource({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            service("web", "10.96.0.10"),
            service("pending", None),  # no ClusterIP yet: skipped
            service("pinned", "10.96.0.11", {"service.cilium.io/node": "edge"}),
            endpoint_slice("web", ["10.0.1.5", "10.0.1.6"]),
            endpoint_slice("pinned", ["10.0.1.7"]),
        ]
    )
    maps = RecordingMaps()
    engine = engine_on(client, tmp_path, maps, kube_proxy_replacement=True)
    assert engine.sync()
    assert frontends(maps.ops) == {"10.96.0.10:80/TCP"}
    assert sum(1 for op in maps.ops if op.kind is MapKind.BACKEND) == 2
    assert "1 => 10.0.1.5:8080/TCP (active)" in engine.service_list()

    maps.ops.clear()
    assert not engine.sync()  # nothing changed: not even recomputed
    assert maps.ops == []

    # The node gets the label: the pinned service appears, without a restart.
    def label(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        body["metadata"].setdefault("labels", {})["service.cilium.io/node"] = "edge"
        return body

    client.mutate("Node", "n1", fn=label)
    engine.relist()  # list again rather than wait for the watch (same result)
    assert engine.sync()
    assert frontends(maps.ops) == {"10.96.0.11:80/TCP"}
    assert all(op.value is not None for op in maps.ops)  # web's rows untouched

    # A backend goes: its slot and backend row are deleted, the master rewritten.
    maps.ops.clear()
    client.apply([endpoint_slice("web", ["10.0.1.5"])])
    engine.relist()
    assert engine.sync()
    deleted = {op.kind for op in maps.ops if op.value is None}
    assert deleted == {MapKind.SERVICE, MapKind.BACKEND}
    assert "10.0.1.6" not in engine.service_list()

    # A Service that does not parse is reported; the others stay.
    client.apply([service("bad", "10.96.0.12")])
    client.mutate(
        "Service",
        "bad",
        "default",
        fn=lambda b: {**(b or {}), "spec": {"clusterIP": "10.96.0.12", "ports": [{"port": 0}]}},
    )
    engine.relist()
    engine.sync()
    assert "default/bad" in engine.problems
    assert "10.96.0.10:80/TCP" in engine.service_list()
    engine.stop()
    store.close()


def wait_synced(engine: ServiceManager, done: Any, what: str) -> None:
    """Sync as the agent's thread does (woken by the store watches) until ``done()``."""
    for _ in range(600):
        engine.sync()
        if done():
            return
        engine.wait_for_change(0.05)
    raise AssertionError(f"the engine never saw {what}")


def test_changes_arrive_through_the_watches_and_touch_only_their_rows(tmp_path: Path) -> None:
    store = open_store(f"local:{tmp_path / 'store.db'}")
    client = ResourceClient(store)
    docs = [Resource({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})]
    for i in range(20):
        docs += [service(f"s{i}", f"10.96.1.{i}"), endpoint_slice(f"s{i}", [f"10.0.2.{i}"])]
    client.apply(docs)
    maps = RecordingMaps()
    # What the maps held before a restart: a Service deleted meanwhile.
    old = engine_on(client, tmp_path, maps)
    client.apply([service("gone", "10.96.2.1"), endpoint_slice("gone", ["10.0.3.1"])])
    assert old.sync()
    held = old.rows
    old.stop()
    client.delete("Service", "gone", "default")
    client.delete("EndpointSlice", "gone-1", "default")

    engine = engine_on(client, tmp_path, maps)
    engine._restore(held)  # as start() does with what it reads back from the maps
    maps.ops.clear()
    assert engine.sync()
    assert [str(op.key.frontend) for op in maps.ops if op.kind is MapKind.SERVICE] == [
        "10.96.2.1:80/TCP",
        "10.96.2.1:80/TCP",
    ]  # only the rows of the Service deleted while the agent was down (master and slot)
    assert all(op.value is None for op in maps.ops)
    assert len(engine.frontends()) == 20

    # One more Service: its rows only, from the watch (no listing).
    maps.ops.clear()
    client.apply([service("new", "10.96.3.1"), endpoint_slice("new", ["10.0.4.1"])])
    wait_synced(engine, lambda: "10.0.4.1" in engine.service_list(), "the new Service")
    assert {str(op.key.frontend) for op in maps.ops if op.kind is MapKind.SERVICE} == {
        "10.96.3.1:80/TCP"
    }
    assert all(op.value is not None for op in maps.ops)

    # A backend of one Service changes state; its slot moves, nothing else is written.
    maps.ops.clear()
    client.apply([endpoint_slice("s3", ["10.0.2.3", "10.0.9.9"])])
    wait_synced(engine, lambda: "10.0.9.9" in engine.service_list(), "the second backend")
    assert {str(op.key.frontend) for op in maps.ops if op.kind is MapKind.SERVICE} == {
        "10.96.1.3:80/TCP"
    }

    # A Service deleted: its rows go; its slice left behind keeps nothing in the maps.
    maps.ops.clear()
    client.delete("Service", "s5", "default")
    wait_synced(engine, lambda: len(engine.frontends()) == 20, "the deletion")
    assert {op.value for op in maps.ops} == {None}
    assert "10.0.2.5" not in engine.service_list()
    engine.stop()
    store.close()


class FlakyMaps:
    """Map state as dicts; the write after ``fail_at`` ops is refused (the kernel said no)."""

    def __init__(self) -> None:
        self.state: dict[MapKind, dict[Any, Any]] = {kind: {} for kind in MapKind}
        self.fail_at: int | None = None

    def apply(self, ops: Iterable[Op]) -> None:
        for op in ops:
            if self.fail_at is not None:
                if self.fail_at == 0:
                    self.fail_at = None
                    raise DatapathError(lbmaps.SERVICES, "update", "No space left on device")
                self.fail_at -= 1
            table = self.state[op.kind]
            if op.value is None:
                table.pop(op.key, None)
            else:
                table[op.key] = op.value

    def read(self) -> Rows:
        return Rows(
            services=dict(self.state[MapKind.SERVICE]),
            backends=dict(self.state[MapKind.BACKEND]),
            rev_nat=dict(self.state[MapKind.REV_NAT]),
            maglev=dict(self.state[MapKind.MAGLEV]),
            affinity=frozenset(self.state[MapKind.AFFINITY_MATCH]),
        )


def test_a_refused_write_is_repaired_by_the_next_sync(tmp_path: Path) -> None:
    store = open_store(f"local:{tmp_path / 'store.db'}")
    client = ResourceClient(store)
    client.apply([service("web", "10.96.0.10"), endpoint_slice("web", ["10.0.1.5"])])
    maps = FlakyMaps()
    engine = engine_on(client, tmp_path, maps)
    assert engine.sync()
    client.apply(
        [
            endpoint_slice("web", ["10.0.1.5", "10.0.1.6", "10.0.1.7"]),
            service("api", "10.96.0.11"),
            endpoint_slice("api", ["10.0.2.5"]),
        ]
    )
    maps.fail_at = 2  # half-way through the change
    engine.relist()
    with pytest.raises(DatapathError):
        engine.sync()
    assert engine.sync()  # from what the maps hold, to what the store says
    assert maps.read() == engine.rows
    assert "10.0.1.7" in engine.service_list() and "10.96.0.11" in engine.service_list()
    engine.stop()
    store.close()
