"""The operator's service controller on a real (SQLite) store: ClusterIPs and NodePorts are
allocated as the API server would, explicit ones honoured; EndpointSlices follow Services'
selectors and Pods (ready, node, named target ports), and only the controller's own slices
are rewritten or removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import open_store
from pylium.core.lb.k8s import parse_endpoint_slice, parse_service
from pylium.core.lb.services import backends
from pylium.model.resource import Resource
from pylium.operator.services import MANAGED_BY_LABEL, ServiceController


def svc(name: str, **spec: Any) -> Resource:
    spec.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
    return Resource(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
    )


def pod(name: str, ip: str | None, node: str, labels: dict[str, str], **extra: Any) -> Resource:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "main", **extra}]},
    }
    if ip:
        body["status"] = {"phase": "Running", "podIP": ip}
    return Resource(body)


def test_allocation_and_endpoint_slices(tmp_path: Path) -> None:
    store = open_store(f"local:{tmp_path / 'store.db'}")
    client = ResourceClient(store)
    ctl = ServiceController(store)
    client.apply([svc("fixed", clusterIP="10.96.100.7", selector={"app": "web"})])
    client.apply([svc("auto", selector={"app": "web"})])
    client.apply([svc("np", type="NodePort", selector={"app": "none"})])
    client.apply([svc("headless", clusterIP="None", selector={"app": "web"})])
    client.apply(
        [
            pod("web-1", "10.0.1.5", "n1", {"app": "web"}),
            pod("web-2", "10.0.2.5", "n2", {"app": "web"}),
            pod("web-3", None, "n2", {"app": "web"}),  # no IP yet: not an endpoint
            pod("db", "10.0.1.9", "n1", {"app": "db"}),
        ]
    )
    ctl.reconcile()

    def spec(name: str) -> dict[str, Any]:
        r = client.get("Service", name, "default")
        assert r is not None
        return dict(r.body["spec"])

    assert spec("fixed")["clusterIP"] == "10.96.100.7"
    auto = spec("auto")["clusterIP"]
    assert auto.startswith("10.9") and auto != "10.96.100.7"
    assert spec("auto")["clusterIPs"] == [auto]
    assert spec("headless")["clusterIP"] == "None"
    assert 30000 <= spec("np")["ports"][0]["nodePort"] <= 32767

    slices = {
        s.name: parse_endpoint_slice(s.body) for s in client.list("EndpointSlice", "default")[0]
    }
    by_service = {str(s.service.name): s for s in slices.values()}
    assert set(by_service) == {"fixed", "auto", "headless"}  # np selects nothing: no slice
    fixed = by_service["fixed"]
    assert [p.port for p in fixed.ports] == [8080]
    assert sorted((str(e.addresses[0]), e.node_name, e.ready) for e in fixed.endpoints) == [
        ("10.0.1.5", "n1", True),
        ("10.0.2.5", "n2", True),
    ]

    # Scale down: a pod goes; a hand-written slice is left alone.
    client.delete("Pod", "web-2", "default")
    client.apply(
        [
            Resource(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": "manual",
                        "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "fixed"},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["192.0.2.1"]}],
                }
            )
        ]
    )
    before = client.get("Service", "auto", "default")
    ctl.reconcile()
    slices_now = client.list("EndpointSlice", "default")[0]
    assert "manual" in {s.name for s in slices_now}
    managed = [s for s in slices_now if s.labels.get(MANAGED_BY_LABEL)]
    fixed_now = next(
        parse_endpoint_slice(s.body)
        for s in managed
        if s.labels["kubernetes.io/service-name"] == "fixed"
    )
    assert [str(e.addresses[0]) for e in fixed_now.endpoints] == ["10.0.1.5"]
    # nothing changed for the others: no rewrite
    after = client.get("Service", "auto", "default")
    assert before is not None and after is not None
    assert before.metadata["resourceVersion"] == after.metadata["resourceVersion"]

    client.delete("Service", "fixed", "default")
    ctl.reconcile()
    names = {s.labels.get("kubernetes.io/service-name") for s in client.list("EndpointSlice")[0]}
    assert names == {"auto", "headless", "fixed"}  # "fixed" only through the manual slice
    assert [
        s.name
        for s in client.list("EndpointSlice")[0]
        if s.labels.get("kubernetes.io/service-name") == "fixed"
    ] == ["manual"]
    store.close()


def test_named_target_port_groups_pods(tmp_path: Path) -> None:
    store = open_store(f"local:{tmp_path / 'store.db'}")
    client = ResourceClient(store)
    client.apply(
        [
            svc("named", selector={"app": "x"}, ports=[{"port": 80, "targetPort": "web"}]),
            pod("a", "10.0.1.1", "n1", {"app": "x"}, ports=[{"name": "web", "containerPort": 81}]),
            pod("b", "10.0.1.2", "n1", {"app": "x"}, ports=[{"name": "web", "containerPort": 82}]),
        ]
    )
    ServiceController(store).reconcile()
    slices = [parse_endpoint_slice(s.body) for s in client.list("EndpointSlice")[0]]
    assert sorted((s.ports[0].port, str(s.endpoints[0].addresses[0])) for s in slices) == [
        (81, "10.0.1.1"),
        (82, "10.0.1.2"),
    ]
    store.close()


def test_terminating_pod_keeps_serving(tmp_path: Path) -> None:
    """A pod being deleted (deletionTimestamp) stays in the slice as serving and terminating,
    not ready, as the endpointslice controller writes it (KEP-1672); the agent's core reads
    that as a terminating backend."""
    store = open_store(f"local:{tmp_path / 'store.db'}")
    client = ResourceClient(store)
    ctl = ServiceController(store)
    client.apply([svc("web", selector={"app": "web"})])
    going = pod("web-1", "10.0.1.5", "n1", {"app": "web"})
    going.body["metadata"]["deletionTimestamp"] = "2026-12-01T23:00:00Z"
    stopped = pod("web-2", "10.0.2.5", "n2", {"app": "web"})
    stopped.body["metadata"]["deletionTimestamp"] = "2026-12-01T23:00:00Z"
    stopped.body["status"]["phase"] = "Succeeded"
    client.apply([going, stopped, pod("web-3", "10.0.3.5", "n3", {"app": "web"})])
    ctl.reconcile()
    (es,) = [parse_endpoint_slice(s.body) for s in client.list("EndpointSlice", "default")[0]]
    got = {str(e.addresses[0]): (e.ready, e.serving, e.terminating) for e in es.endpoints}
    assert got == {
        "10.0.1.5": (False, True, True),
        "10.0.2.5": (False, False, True),
        "10.0.3.5": (True, True, False),
    }
    web = client.get("Service", "web", "default")
    assert web is not None
    states = {
        str(b.address.address): b.state.value for b in backends(parse_service(web.body), [es])
    }
    assert states == {
        "10.0.1.5": "terminating",
        "10.0.2.5": "terminating-not-serving",
        "10.0.3.5": "active",
    }
