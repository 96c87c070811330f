"""cluster-pool IPAM in a lab: operator carves node CIDRs, agents hand out pod IPs through their
API, a full node gets a second CIDR, allocations survive kill -9, parallel requests never get
the same address, and a refused pool change is reported in the CiliumNode status."""

from __future__ import annotations

import ipaddress
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentAPIError, AgentClient

from .conftest import Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]


def wait_for(what: str, predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def agent(cli: Cli, lab: str, node: str) -> AgentClient:
    return AgentClient(cli.home / "labs" / lab / node / "pylium.sock", timeout=30)


def ipam_rows(cli: Cli) -> dict[str, dict[str, Any]]:
    return {r["node"]: r for r in json.loads(cli("ipam", "status", "-o", "json").stdout)}


def ready(client: AgentClient) -> bool:
    try:
        return bool(client.get("/v1/ipam")["ready"])
    except Exception:
        return False


@pytest.mark.parametrize("store", ["local", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_cluster_pool_end_to_end(cli: Cli, store: str) -> None:
    lab = f"i{store[0]}{os.getpid() % 10000}"
    cli(
        "lab",
        "up",
        "--nodes",
        "2",
        "--store",
        store,
        "--name",
        lab,
        "--set",
        "ipam.operator.clusterPoolIPv4PodCIDRList={10.244.0.0/16}",
        "--set",
        "ipam.operator.clusterPoolIPv4MaskSize=28",
    )
    try:
        rows = wait_for(
            "node CIDRs",
            lambda: (r := ipam_rows(cli)) and all(x["cidrs"] for x in r.values()) and r,
        )
        blocks = {n: ipaddress.ip_network(r["cidrs"][0]) for n, r in rows.items()}
        assert blocks["n1"] != blocks["n2"]
        assert all(
            b.prefixlen == 28 and b.subnet_of(ipaddress.ip_network("10.244.0.0/16"))
            for b in blocks.values()
        )

        n1 = agent(cli, lab, "n1")
        wait_for("n1 IPAM", lambda: ready(n1))
        # 20 parallel requests on a /28 (13 usable after the router): the node fills its
        # first block, is given a second one by the operator, and no address repeats.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda i: n1.post("/v1/ipam", owner=f"default/p{i}"), range(20))
            )
        ips = [ipaddress.ip_address(a["address"]["ipv4"]) for a in answers]
        assert len(set(ips)) == 20
        router = ipaddress.ip_address(answers[0]["ipv4"]["gateway"])
        assert router not in ips
        cidrs = [ipaddress.ip_network(c) for c in answers[-1]["ipv4"]["cidrs"]]
        assert len(cidrs) == 2
        for ip in ips:
            block = next(c for c in cidrs if ip in c)
            assert ip not in (block.network_address, block.broadcast_address)

        # A release, a harmless release of an unknown IP, then a crash.
        released = ips[0]
        assert n1.delete(f"/v1/ipam/{released}")["released"] is True
        assert n1.delete("/v1/ipam/10.244.255.1")["released"] is False
        cli("lab", "restart", "n1", "--name", lab, "--kill")
        wait_for("n1 IPAM after restart", lambda: ready(n1))
        for i, ip in enumerate(ips[1:], start=1):
            assert n1.get(f"/v1/ipam/{ip}")["owner"] == f"default/p{i}"
        with pytest.raises(AgentAPIError) as err:
            n1.get(f"/v1/ipam/{released}")
        assert err.value.status == 404
        fresh = ipaddress.ip_address(n1.post("/v1/ipam", owner="default/new")["address"]["ipv4"])
        assert fresh not in ips[1:] and fresh != router

        status = ipam_rows(cli)["n1"]
        assert status["used"] == 20 + 1  # 19 kept + the new one + the router
    finally:
        cli("lab", "down", "--name", lab, check=False)


def test_pool_change_refused_and_exhaustion_reported(cli: Cli) -> None:
    lab = f"ip{os.getpid() % 10000}"
    cli(
        "lab",
        "up",
        "--nodes",
        "3",
        "--name",
        lab,
        "--set",
        "ipam.operator.clusterPoolIPv4PodCIDRList={10.244.0.0/23}",
    )
    try:
        rows = wait_for(
            "decisions",
            lambda: (r := ipam_rows(cli)) and sum(bool(x["cidrs"]) for x in r.values()) == 2 and r,
        )
        starving = [r for r in rows.values() if not r["cidrs"]]
        assert len(starving) == 1
        assert "no remaining CIDRs left to allocate" in starving[0]["error"]

        # Restart the operator with a pool whose first entry changed: refused, reported on
        # every node, and the nodes keep their CIDRs.
        config_path = cli.home / "labs" / lab / "config.json"
        config = json.loads(config_path.read_text())
        config["cluster-pool-ipv4-cidr"] = "10.99.0.0/16 10.244.0.0/23"
        config_path.write_text(json.dumps(config))
        cli("lab", "restart", "operator", "--name", lab, "--kill")
        after = wait_for(
            "the refusal in every CiliumNode",
            lambda: (
                (r := ipam_rows(cli))
                and all("entry 0 changed" in x["error"] for x in r.values())
                and r
            ),
        )
        for node, row in rows.items():
            assert after[node]["cidrs"] == row["cidrs"]
        log = (cli.home / "labs" / lab / "operator.log").read_text()
        assert "entry 0 changed from 10.244.0.0/23 to 10.99.0.0/16" in log
    finally:
        cli("lab", "down", "--name", lab, "--force", check=False)


def test_kubernetes_mode_uses_node_pod_cidrs(cli: Cli) -> None:
    lab = f"ik{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "1", "--name", lab, "--set", "ipam.mode=kubernetes")
    try:
        n1 = agent(cli, lab, "n1")
        with pytest.raises(AgentAPIError) as err:
            n1.post("/v1/ipam", owner="default/early")
        assert err.value.status == 503 and "no pod CIDR yet" in err.value.message
        node = json.loads(cli("get", "node", "n1", "-o", "json").stdout)
        node["spec"] = {"podCIDRs": ["10.50.1.0/24"]}
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            node["metadata"].pop(field, None)
        path = cli.home / "n1.json"
        path.write_text(json.dumps(node))
        cli("apply", "-f", str(path))
        wait_for("n1 IPAM", lambda: ready(n1))
        ip = ipaddress.ip_address(n1.post("/v1/ipam", owner="default/a")["address"]["ipv4"])
        assert ip in ipaddress.ip_network("10.50.1.0/24")
        cn = json.loads(cli("get", "cn", "n1", "-o", "json").stdout)
        assert not cn["spec"].get("ipam", {}).get("podCIDRs")  # the operator allocated nothing
    finally:
        cli("lab", "down", "--name", lab, check=False)


POOLS = """\
apiVersion: cilium.io/v2alpha1
kind: CiliumPodIPPool
metadata: {name: default}
spec: {ipv4: {cidrs: [10.20.0.0/16], maskSize: 27}}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumPodIPPool
metadata: {name: blue}
spec: {ipv4: {cidrs: [10.30.0.0/16], maskSize: 28}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team, annotations: {ipam.cilium.io/ip-pool: blue}}
"""


def test_multi_pool_chunks_follow_demand(cli: Cli) -> None:
    lab = f"im{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab, "--set", "ipam.mode=multi-pool")
    try:
        path = cli.home / "pools.yaml"
        path.write_text(POOLS)
        cli("apply", "-f", str(path))
        n1 = agent(cli, lab, "n1")
        wait_for("n1 IPAM", lambda: ready(n1))
        default_ip = n1.post("/v1/ipam", owner="default/web")["address"]["ipv4"]
        assert ipaddress.ip_address(default_ip) in ipaddress.ip_network("10.20.0.0/16")
        # The namespace's annotation picks the blue pool; 20 pods need two /28 chunks.
        blue = [n1.post("/v1/ipam", owner=f"team/p{i}")["address"]["ipv4"] for i in range(20)]
        assert len(set(blue)) == 20
        assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.30.0.0/16") for ip in blue)
        cn = json.loads(cli("get", "cn", "n1", "-o", "json").stdout)
        allocated = {a["pool"]: a["cidrs"] for a in cn["spec"]["ipam"]["pools"]["allocated"]}
        assert len(allocated["blue"]) >= 2
        # Releasing the pods gives unused chunks back to the pool.
        for ip in blue:
            n1.delete(f"/v1/ipam/{ip}")

        def shrunk() -> bool:
            body = json.loads(cli("get", "cn", "n1", "-o", "json").stdout)
            alloc = {a["pool"]: a["cidrs"] for a in body["spec"]["ipam"]["pools"]["allocated"]}
            return len(alloc.get("blue", [])) < len(allocated["blue"])

        wait_for("blue chunks returned", shrunk)
    finally:
        cli("lab", "down", "--name", lab, check=False)
