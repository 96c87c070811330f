"""Operator high availability in a lab, with etcd and with the local store: two operators
(Helm ``operator.replicas=2``), the leader killed -9, the standby takes over, and nothing
is allocated twice across the hand-over (pod CIDRs of nodes added before, during and after it,
ClusterIPs and NodePorts of Services created meanwhile, identities of pods started
meanwhile). Then both operators down: the running nodes keep working (existing pods reachable,
a new pod gets an IP from its node's CIDR). ``pylium status`` counts the replicas throughout.

The hand-over time is printed (run with ``-s``); it is not asserted."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from typing import Any

import pytest

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.model.resource import Resource

from .conftest import HTTP_SERVER, Cli, wait_for
from .test_policy import connect_from

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

LEADER_KEY = "operator/leader"


def cilium_node(name: str) -> Resource:
    """A node the operator allocates for (no agent behind it: nothing routes to it)."""
    return Resource(
        {"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": name}}
    )


def service(name: str) -> Resource:
    return Resource(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": name},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        }
    )


def operators(cli: Cli) -> dict[str, Any]:
    data = json.loads(cli("status", "-o", "json").stdout)
    return dict(data["deployments"]["cilium-operator"])


@pytest.mark.parametrize("store", [pytest.param("etcd", marks=pytest.mark.etcd), "local"])
def test_leader_kill_hands_over_without_allocating_twice(cli: Cli, store: str) -> None:
    lab = f"ha{store[0]}{os.getpid() % 10000}"
    cli(
        "lab", "up", "--nodes", "2", "--store", store, "--name", lab, "--set", "operator.replicas=2"
    )
    lab_json = cli.home / "labs" / lab / "lab.json"
    state = json.loads(lab_json.read_text())
    db = open_store(state["store_url"])
    try:
        client = ResourceClient(db)
        counts = operators(cli)
        assert (counts["desired"], counts["ready"]) == (2, 2)
        lab_status = json.loads(cli("lab", "status", "--name", lab, "-o", "json").stdout)
        assert [r["running"] for r in lab_status["operator"]["replicas"]] == [True, True]
        cli(
            "lab",
            "pod",
            "run",
            "server",
            "--node",
            "n2",
            "-l",
            "app=server",
            "--name",
            lab,
            "--",
            *HTTP_SERVER,
        )
        cli("lab", "pod", "run", "client", "--node", "n1", "-l", "app=client", "--name", lab)

        kv = db.get(LEADER_KEY)
        assert kv is not None
        leader = kv.value.decode()
        roles = {f"{lab}-operator": "operator", f"{lab}-operator-2": "operator-2"}
        successor = next(identity for identity in roles if identity != leader)

        names = [f"x{i}" for i in range(12)]
        for name in names[:3]:  # before the kill
            client.apply([cilium_node(name), service(f"s-{name}")])
        os.kill(state["pids"][roles[leader]], 9)
        killed = time.monotonic()
        for name in names[3:9]:  # while nobody leads
            client.apply([cilium_node(name), service(f"s-{name}")])
        handed_over = None
        while handed_over is None:
            kv = db.get(LEADER_KEY)
            if kv is not None and kv.value.decode() == successor:
                handed_over = time.monotonic() - killed
            else:
                assert time.monotonic() - killed < 60, "no operator took over"
                time.sleep(0.05)
        print(f"\n[{store}] operator leader hand-over after kill -9: {handed_over:.2f} s")
        cli("lab", "pod", "run", "mid", "--node", "n1", "-l", "app=mid", "--name", lab)
        for name in names[9:]:  # after
            client.apply([cilium_node(name), service(f"s-{name}")])

        def allocated() -> bool:
            nodes = [client.get("CiliumNode", n) for n in names]
            svcs = [client.get("Service", f"s-{n}", "default") for n in names]
            return all(
                n is not None and ((n.body.get("spec") or {}).get("ipam") or {}).get("podCIDRs")
                for n in nodes
            ) and all(
                s is not None
                and s.body["spec"].get("clusterIP")
                and all(p.get("nodePort") for p in s.body["spec"]["ports"])
                for s in svcs
            )

        wait_for("every node and service to be allocated", allocated, timeout=120)
        cidrs = [
            ipaddress.ip_network(c)
            for r in client.list("CiliumNode")[0]
            for c in (r.body["spec"].get("ipam") or {}).get("podCIDRs") or []
        ]
        assert len(cidrs) == len(names) + 2
        assert not [(a, b) for i, a in enumerate(cidrs) for b in cidrs[i + 1 :] if a.overlaps(b)]
        specs = [r.body["spec"] for r in client.list("Service")[0] if r.name.startswith("s-x")]
        cluster_ips = [s["clusterIP"] for s in specs]
        node_ports = [p["nodePort"] for s in specs for p in s["ports"]]
        assert len(specs) == len(names)
        assert len(set(cluster_ips)) == len(cluster_ips), cluster_ips
        assert len(set(node_ports)) == len(node_ports), node_ports
        ceps = {
            r.name: r.body["status"]["identity"]["id"] for r in client.list("CiliumEndpoint")[0]
        }
        assert sorted(ceps) == ["client", "mid", "server"]
        assert len(set(ceps.values())) == 3, ceps
        identities = {r.name for r in client.list("CiliumIdentity")[0]}
        assert {str(i) for i in ceps.values()} <= identities

        # The killed replica's presence went with its lease: 1 of 2 ready, and a warning.
        counts = operators(cli)
        assert (counts["desired"], counts["ready"], counts["leader"]) == (2, 1, successor)
        cli("lab", "restart", roles[leader], "--name", lab)
        wait_for("both replicas to be ready", lambda: operators(cli)["ready"] == 2, timeout=60)

        # -- operator down: every replica killed ---------------------------------------------
        state = json.loads(lab_json.read_text())
        for role in roles.values():
            os.kill(state["pids"][role], 9)
        wait_for("the leader lease to expire", lambda: db.get(LEADER_KEY) is None, timeout=60)
        down = json.loads(cli("status", "-o", "json").stdout)
        assert down["deployments"]["cilium-operator"]["ready"] == 0
        assert any(e["component"] == "cilium-operator" for e in down["errors"])
        server_ip = json.loads(lab_json.read_text())["pods"]["default/server"]["ip"]

        def connect(pod: str) -> str:
            return connect_from(cli, lab, pod, server_ip, 2.0)

        wait_for("the client to reach the server", lambda: connect("client") == "ok", timeout=30)
        cli("lab", "pod", "run", "late", "--node", "n1", "-l", "app=late", "--name", lab)
        late_ip = json.loads(lab_json.read_text())["pods"]["default/late"]["ip"]
        n1 = client.get("CiliumNode", "n1")
        assert n1 is not None
        assert any(
            ipaddress.ip_address(late_ip) in ipaddress.ip_network(c)
            for c in n1.body["spec"]["ipam"]["podCIDRs"]
        )
        wait_for("the new pod to reach the server", lambda: connect("late") == "ok", timeout=30)
        for role in roles.values():
            cli("lab", "restart", role, "--name", lab)
        assert json.loads(cli("status", "--wait", "--wait-duration", "2m", "-o", "json").stdout)[
            "ready"
        ]
    finally:
        db.close()
        cli("lab", "down", "--name", lab, check=False)
