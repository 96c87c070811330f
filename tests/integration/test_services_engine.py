"""The agent's services engine on a real store with a recording stand-in for the BPF maps:
what it writes for Services and EndpointSlices, node exposure following the node's labels
without a restart, Services without a ClusterIP skipped, diffs only (an unchanged sync writes
nothing), and bad objects reported instead of stopping the rest."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from pylium.adapters.maps import lb as lbmaps
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import open_store
from pylium.agent.services import ServiceManager
from pylium.core.lb.translate import MapKind, Op
from pylium.model.resource import Resource


class RecordingMaps:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def apply(self, ops: Iterable[Op]) -> None:
        self.ops.extend(ops)


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
    engine = ServiceManager(
        client,
        node="n1",
        node_addresses=(),
        bpf_root=tmp_path,
        cgroup_path=tmp_path,
        socket_lb=False,
        kube_proxy_replacement=True,
    )
    engine.maps = cast(lbmaps.LBMaps, maps)
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
    engine._last_full = 0.0  # no watches in this test: force the resync
    assert engine.sync()
    assert frontends(maps.ops) == {"10.96.0.11:80/TCP"}
    assert all(op.value is not None for op in maps.ops)  # web's rows untouched

    # A backend goes: its slot and backend row are deleted, the master rewritten.
    maps.ops.clear()
    client.apply([endpoint_slice("web", ["10.0.1.5"])])
    engine._last_full = 0.0
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
    engine._last_full = 0.0
    engine.sync()
    assert "default/bad" in engine.problems
    assert "10.96.0.10:80/TCP" in engine.service_list()
    store.close()
