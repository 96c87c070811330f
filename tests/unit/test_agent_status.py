"""The agent's StatusResponse: controllers' bookkeeping, and which facts turn a subsystem to
Failure with a hint (a failing or stale heartbeat means the store; no CIDR means IPAM)."""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pylium.agent.health import HealthDaemon, targets_from
from pylium.agent.status import HEARTBEAT_CONTROLLER, Controllers, describe_store, status_response
from pylium.core.health import Target
from pylium.core.hubble.ring import FlowRing
from pylium.core.ipam.hostscope import Usage
from pylium.core.settings.checks import HostRouting
from pylium.model.config import AgentSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def boom() -> None:
    raise RuntimeError("store: no etcd endpoint answered")


def test_controllers_count_successes_and_failures() -> None:
    clock = Clock()
    ctl = Controllers(clock)
    assert ctl.run("a", lambda: 7) == 7
    clock.now = 1001.0
    with pytest.raises(RuntimeError):
        ctl.run("a", boom)
    with pytest.raises(RuntimeError):
        ctl.run("a", boom)
    st = ctl.get("a")
    assert st is not None
    assert (st.success_count, st.failure_count, st.consecutive_failure_count) == (1, 2, 2)
    assert (st.last_success, st.last_failure) == (1000.0, 1001.0)
    assert not st.healthy
    ctl.run("a", lambda: None)
    st = ctl.get("a")
    assert st is not None and st.healthy and st.failure_count == 2
    data = st.to_json()
    assert data["name"] == "a"
    assert data["status"]["last-failure-msg"] == "store: no etcd endpoint answered"
    assert data["status"]["last-success-timestamp"] == "1970-01-01T00:16:41Z"
    assert [c.name for c in ctl.snapshot()] == ["a"]


def test_describe_store() -> None:
    assert describe_store(SimpleNamespace(path=Path("/x/s.sqlite"))) == "local: /x/s.sqlite"
    assert describe_store(SimpleNamespace(endpoints=("http://e:2379",))) == (
        "etcd: 1 endpoint(s) http://e:2379"
    )


def test_targets_from_cilium_nodes() -> None:
    bodies = [
        {"metadata": {"name": "n2"}, "spec": {"addresses": [{"type": "InternalIP", "ip": "b"}]}},
        {"metadata": {"name": "n1"}, "spec": {"addresses": [{"type": "InternalIP", "ip": "a"}]}},
        {"metadata": {"name": "n3"}, "spec": {}},  # not registered yet: not probed
    ]
    assert targets_from(bodies) == [Target("n1", "a"), Target("n2", "b")]


def fake_agent(
    *, ready: bool = True, datapath_error: str = "", host_routing: HostRouting = HostRouting(True)
) -> Any:
    ready_event = threading.Event()
    if ready:
        ready_event.set()
    usage = Usage(used=3, capacity=254, cidrs=())
    return SimpleNamespace(
        name="n1",
        settings=AgentSettings.from_configmap({}),
        controllers=Controllers(),
        store=SimpleNamespace(path=Path("/x/store.sqlite")),
        lease=2,
        ipam=SimpleNamespace(usage=lambda: usage, ready=ready_event),
        datapath_error=datapath_error,
        endpoints=SimpleNamespace(
            obj=object() if ready else None,
            node_ip=ipaddress.IPv4Address("192.0.2.1"),
            host_routing=host_routing,
        ),
        started=time.time(),
        hubble=SimpleNamespace(ring=FlowRing(4095), started=time.time() - 10),
    )


def health() -> HealthDaemon:
    return HealthDaemon(
        node="n1", address="192.0.2.1", store=cast(Any, None), lease=lambda: 0, enabled=False
    )


def test_status_response_ok() -> None:
    agent = fake_agent()
    agent.controllers.succeeded(HEARTBEAT_CONTROLLER)
    resp = status_response(agent, health())
    assert resp["kvstore"]["state"] == "Ok"
    assert resp["kvstore"]["msg"] == "local: /x/store.sqlite, heartbeat lease 2"
    assert resp["ipam"]["state"] == "Ok"
    assert resp["routing"]["inter-host-routing-mode"] == "Tunnel"
    assert resp["routing"]["tunnel-protocol"] == "vxlan"
    assert resp["routing"]["intra-host-routing-mode"] == "BPF"
    legacy = fake_agent(host_routing=HostRouting(False, "configured"))
    assert status_response(legacy, health())["routing"]["intra-host-routing-mode"] == "Legacy"
    assert resp["kube-proxy-replacement"]["mode"] == "False"
    assert not resp["kube-proxy-replacement"]["features"]["socketLB"]["enabled"]
    assert resp["hubble"] == {
        "state": "Ok",
        "msg": "Current/Max Flows: 0/4095 (0.00%), Flows/s: 0.00",
    }
    assert resp["cilium-health"]["state"] == "Disabled"
    assert resp["cluster"]["health"] is None
    assert resp["identity-range"] == {"min-identity": 256, "max-identity": 65535}


def test_failing_heartbeat_or_store_errors_mean_kvstore_failure() -> None:
    agent = fake_agent()
    agent.controllers.failed(HEARTBEAT_CONTROLLER, "lease 2 expired")
    resp = status_response(agent, health())
    assert resp["kvstore"]["state"] == "Failure"
    assert "lease 2 expired" in resp["kvstore"]["msg"]
    assert "store" in resp["kvstore"]["hint"]

    agent = fake_agent()
    agent.controllers.succeeded(HEARTBEAT_CONTROLLER)
    agent.controllers.failed("ipam-sync-cidrs", "store: no etcd endpoint answered")
    assert status_response(agent, health())["kvstore"]["state"] == "Failure"

    agent = fake_agent()
    agent.controllers = Controllers(lambda: time.time() - 60)  # last renewal a minute ago
    agent.controllers.succeeded(HEARTBEAT_CONTROLLER)
    resp = status_response(agent, health())
    assert resp["kvstore"]["state"] == "Failure"
    assert "heartbeat last renewed 60s ago" in resp["kvstore"]["msg"]


def test_no_cidr_and_datapath_failure_have_hints() -> None:
    resp = status_response(fake_agent(ready=False), health())
    assert resp["ipam"]["state"] == "Failure"
    assert "operator" in resp["ipam"]["hint"]
    assert resp["cilium"]["state"] == "Warning"
    resp = status_response(fake_agent(datapath_error="clang failed"), health())
    assert resp["cilium"] == {
        "state": "Failure",
        "msg": "clang failed",
        "hint": "the datapath did not start: read the node's agent.log, fix, then "
        "`pylium lab restart n1`",
    }
