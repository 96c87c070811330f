"""The lab end to end: up, status, the CLI against it, down leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from pylium.adapters import procs

from .conftest import Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def assert_gone(name: str, state: dict[str, object]) -> None:
    """Nothing of lab ``name`` is left: namespaces, root links, processes. (Only this lab's
    objects are checked, so that other labs running on the machine do not matter.)"""
    assert [ns for ns in netns_list() if ns.startswith(f"pl-{name}-")] == []
    assert [link for link in links() if link.startswith(f"pl-{name}-")] == []
    pids = state["pids"]
    assert isinstance(pids, dict)
    assert all(not procs.alive(pid) for pid in pids.values())


@pytest.mark.parametrize("store", ["local", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_lab_up_status_down(cli: Cli, store: str) -> None:
    name = f"t{store[0]}{os.getpid() % 10000}"
    cli(
        "lab",
        "up",
        "--nodes",
        "2",
        "--store",
        store,
        "--name",
        name,
        "--set",
        "ipam.operator.clusterPoolIPv4PodCIDRList={10.244.0.0/16}",
    )
    try:
        state = json.loads((cli.home / "labs" / name / "lab.json").read_text())
        assert {f"pl-{name}-fab", f"pl-{name}-n1", f"pl-{name}-n2"} <= netns_list()

        report = json.loads(cli("lab", "status", "--name", name, "-o", "json").stdout)
        assert report["healthy"], report["problems"]
        assert [n["name"] for n in report["nodes"]] == ["n1", "n2"]
        assert all(n["registered"] and n["heartbeat"] for n in report["nodes"])
        assert report["operator"]["leader"] == f"{name}-operator"

        # The CLI's other commands talk to the lab by default.
        nodes = json.loads(cli("get", "nodes", "-o", "json").stdout)["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == ["n1", "n2"]
        addresses = {n["status"]["addresses"][0]["address"] for n in nodes}
        assert addresses == {n["address"].split("/")[0] for n in report["nodes"]}
        cns = json.loads(cli("get", "cn", "-o", "json").stdout)["items"]
        assert sorted(c["metadata"]["name"] for c in cns) == ["n1", "n2"]

        # The agent received the --set value as its ConfigMap.
        config = json.loads((cli.home / "labs" / name / "config.json").read_text())
        assert config["cluster-pool-ipv4-cidr"] == "10.244.0.0/16"

        # A second lab of the same name is refused, naming the fix.
        again = cli("lab", "up", "--name", name, check=False)
        assert again.returncode == 1 and "lab down" in again.stderr
    finally:
        cli("lab", "down", "--name", name, check=False)
    assert_gone(name, state)
    assert not (cli.home / "labs" / name).exists()
    assert cli("get", "nodes", check=False).returncode == 1  # no current context any more


def test_down_force_after_crash(cli: Cli) -> None:
    name = f"tc{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", name)
    state = json.loads((cli.home / "labs" / name / "lab.json").read_text())
    try:
        for pid in state["pids"].values():
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", f"pl-{name}-n2"], check=True)  # half gone
        unhealthy = cli("lab", "status", "--name", name, check=False)
        assert unhealthy.returncode == 1
        assert "agent not running" in unhealthy.stdout
    finally:
        cli("lab", "down", "--name", name, "--force")
    assert_gone(name, state)


def test_bad_lab_requests_are_refused(cli: Cli) -> None:
    bad_set = cli("lab", "up", "--name", "tbad", "--set", "maglev.tableSize=1000", check=False)
    assert bad_set.returncode == 1
    assert "bpf-lb-maglev-table-size" in bad_set.stderr
    bad_nodes = cli("lab", "up", "--name", "tbad", "--nodes", "0", check=False)
    assert bad_nodes.returncode == 1 and "--nodes" in bad_nodes.stderr
    assert not any(ns.startswith("pl-tbad-") for ns in netns_list())
    assert cli("lab", "status", "--name", "tbad", check=False).returncode == 1


def cli_home(cli: Cli) -> os.PathLike[str]:
    from pathlib import Path

    return Path(cli.env["PYLIUM_HOME"])
