"""``pylium status`` (cluster and node) and ``pylium health`` against a real lab: every agent
ready and every node reachable; then one agent killed -9: the cluster reports it not ready,
the other node's health sees its host still answering ICMP while HTTP :4240 fails, and asking
the dead agent says what to do."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from .conftest import Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]


def lab_state(cli: Cli, lab: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
    return data


def line(text: str, label: str) -> str:
    lines = text.splitlines()
    found = [ln for ln in lines if ln.startswith(label)] or [ln for ln in lines if label in ln]
    assert found, f"no {label!r} line in:\n{text}"
    return found[0]


def node_health(report: dict[str, Any], name: str) -> dict[str, Any]:
    for node in report["nodes"]:
        if node["name"] == name:
            primary: dict[str, Any] = node["host"]["primary-address"]
            return primary
    raise AssertionError(f"{name} not in {report}")


def wait_for(what: str, check: Any, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1.0)


def probe_until(cli: Cli, lab: str, node: str, ok: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Probe from ``node`` until ``ok(report)``: a loaded machine may miss a probe deadline."""

    def attempt() -> dict[str, Any] | None:
        out = cli("health", "--node", node, "--lab", lab, "--probe", "-o", "json").stdout
        report: dict[str, Any] = json.loads(out)
        return report if ok(report) else None

    result: dict[str, Any] = wait_for(f"probes from {node}", attempt, timeout)
    return result


def test_status_and_health_with_a_dead_agent(cli: Cli) -> None:
    lab = f"s{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab)
    try:
        out = cli("status", "--wait", "--wait-duration", "60s").stdout
        assert line(out, "Cilium:").rstrip().endswith("OK")
        assert "Desired: 2, Ready: 2/2, Available: 2/2" in line(out, "DaemonSet")
        assert "Desired: 1, Ready: 1/1, Available: 1/1" in line(out, "Deployment")
        assert "Running: 2" in line(out, "Containers:")
        assert "managed by Cilium" in line(out, "Cluster Pods:")
        data = json.loads(cli("status", "-o", "json").stdout)
        assert data["ready"] is True and data["daemonsets"]["cilium"]["ready"] == 2

        node = cli("status", "--node", "n1", "--lab", lab).stdout
        assert "allocated from 10.0." in line(node, "IPAM:")
        assert "IPv4: " in line(node, "IPAM:")
        assert "Network: Tunnel [vxlan]   Host: BPF" in line(node, "Routing:")
        assert line(node, "KVStore:").split()[1] == "Ok"
        assert line(node, "KubeProxyReplacement:").split()[1] == "False"
        assert "healthy" in line(node, "Controller Status:")

        def all_reachable(report: dict[str, Any]) -> bool:
            return all(
                node_health(report, name)[probe]["status"] == ""
                for name in ("n1", "n2")
                for probe in ("icmp", "http")
            )

        health = probe_until(cli, lab, "n1", all_reachable)
        for name in ("n1", "n2"):
            probes = node_health(health, name)
            assert probes["icmp"]["latency"] > 0 and probes["http"]["latency"] > 0
        probe_until(cli, lab, "n2", all_reachable)
        text = cli("health", "--node", "n2", "--lab", lab).stdout
        assert "n2 (localhost):" in text
        assert text.count("HTTP to agent:   OK, RTT=") == 2
        assert "2/2 reachable" in line(
            cli("status", "--node", "n1", "--lab", lab).stdout, "Cluster health:"
        )
        assert "2/2 reachable" in line(cli("status").stdout, "Cluster health:")

        os.kill(lab_state(cli, lab)["pids"]["agent-n2"], signal.SIGKILL)

        def n2_not_ready() -> dict[str, Any] | None:
            st = json.loads(cli("status", "-o", "json").stdout)
            return st if st["daemonsets"]["cilium"]["ready"] == 1 else None

        st = wait_for("the cluster to see n2's agent gone", n2_not_ready)
        assert st["ready"] is False
        assert [e["pod"] for e in st["errors"]] == ["n2"]
        out = cli("status").stdout
        assert "Ready: 1/2, Available: 1/2, Unavailable: 1/2" in line(out, "DaemonSet")
        assert "1 errors" in line(out, "Cilium:")
        assert "no heartbeat" in line(out, "Errors:")
        waited = cli("status", "--wait", "--wait-duration", "2s", check=False)
        assert waited.returncode == 1 and "not ready after 2s" in waited.stderr

        # The host still answers ICMP (the kernel does); the agent's :4240 does not.
        def icmp_only(report: dict[str, Any]) -> bool:
            n2 = node_health(report, "n2")
            return (
                n2["icmp"]["status"] == ""
                and "connection refused" in n2["http"]["status"]
                and node_health(report, "n1")["http"]["status"] == ""
            )

        probe_until(cli, lab, "n1", icmp_only)
        text = cli("health", "--node", "n1", "--lab", lab).stdout
        assert "ICMP to stack:   OK" in text and "connection refused" in text

        node = cli("status", "--node", "n1", "--lab", lab).stdout
        assert "1/2 reachable" in line(node, "Cluster health:")
        assert line(node, "  n2 ").split()[2] == "1/2"  # Node: ICMP yes, HTTP no
        out = cli("status").stdout
        assert "1/2 reachable" in line(out, "Cluster health:")
        assert "host reachable but its agent is not" in line(out, "Warnings:")

        dead = cli("status", "--node", "n2", "--lab", lab, check=False)
        assert dead.returncode == 1
        assert "Is the agent running?" in dead.stderr and "lab restart n2" in dead.stderr
    finally:
        cli("lab", "down", "--name", lab, "--force", check=False)


def test_node_status_native_routing(cli: Cli) -> None:
    lab = f"t{os.getpid() % 10000}"
    cli(
        "lab",
        "up",
        "--nodes",
        "1",
        "--name",
        lab,
        "--set",
        "routingMode=native",
        "--set",
        "ipv4NativeRoutingCIDR=10.0.0.0/8",
        "--set",
        "autoDirectNodeRoutes=true",
    )
    try:
        node = cli("status", "--node", "n1", "--lab", lab).stdout
        assert "Network: Native   Host: BPF" in line(node, "Routing:")
        health = json.loads(
            cli("health", "--node", "n1", "--lab", lab, "--probe", "-o", "json").stdout
        )
        assert [n["name"] for n in health["nodes"]] == ["n1"]
        out = cli("status", "--wait", "--wait-duration", "60s").stdout
        assert "Desired: 1, Ready: 1/1, Available: 1/1" in line(out, "DaemonSet")
    finally:
        cli("lab", "down", "--name", lab, "--force", check=False)
