"""The lab end to end: up, status, the CLI against it, down leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from pylium.adapters import procs
from pylium.lab.plan import bpf_root

from .conftest import PYLIUM, Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def netns_mounts(name: str) -> list[str]:
    """Mount points of lab ``name``'s namespace files (``ip netns add`` bind-mounts each)."""
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return [p for p in points if p.startswith(f"/run/netns/pl-{name}-")]


def assert_gone(cli: Cli, name: str, state: dict[str, object]) -> None:
    """Nothing of lab ``name`` is left: namespaces, their mounts, root links, processes, the
    state and BPF directories. (Only this lab's objects are checked, so that other labs running
    on the machine do not matter.)"""
    assert [ns for ns in netns_list() if ns.startswith(f"pl-{name}-")] == []
    assert netns_mounts(name) == []
    assert [link for link in links() if link.startswith(f"pl-{name}-")] == []
    pids = state["pids"]
    assert isinstance(pids, dict) and pids
    assert [pid for pid in pids.values() if procs.alive(pid)] == []
    lab_dir = str(cli.home / "labs" / name)
    assert lab_processes(lab_dir) == []  # also those a crash may have left unrecorded
    assert not (cli.home / "labs" / name).exists()
    assert not bpf_root(name).exists()


def lab_processes(lab_dir: str) -> list[int]:
    """PIDs whose command line names the lab's directory (its agents, operator, etcd)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if lab_dir.encode() in cmdline.read() and procs.alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("store", ["local", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_lab_up_status_down(cli: Cli, store: str) -> None:
    name = f"t{store[0]}{os.getpid() % 1000000:06d}"  # 8 characters: the longest allowed
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
        lab_netns = {f"pl-{name}-{suffix}" for suffix in ("fab", "n1", "n2", "cl")}
        assert lab_netns <= netns_list()
        assert len(netns_mounts(name)) == 4  # the fabric, two nodes, the client
        if store == "etcd":
            assert f"pl-{name}-mg" in links() and "etcd" in state["pids"]

        report = json.loads(cli("lab", "status", "--name", name, "-o", "json").stdout)
        assert report["healthy"], report["problems"]
        assert [n["name"] for n in report["nodes"]] == ["n1", "n2"]
        assert report["store_backend"] == store and report["store"] == state["store_url"]
        assert all(n["registered"] and n["heartbeat"] for n in report["nodes"])
        assert all(n["netns"] and n["address_present"] for n in report["nodes"])
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
    assert_gone(cli, name, state)
    assert cli("get", "nodes", check=False).returncode == 1  # no current context any more
    assert cli("lab", "down", "--name", name, "--force").returncode == 0  # idempotent


@pytest.mark.parametrize("store", ["local", pytest.param("etcd", marks=pytest.mark.etcd)])
def test_down_force_after_crash(cli: Cli, store: str) -> None:
    name = f"tc{store[0]}{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", name, "--store", store)
    state = json.loads((cli.home / "labs" / name / "lab.json").read_text())
    try:
        for pid in state["pids"].values():
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", f"pl-{name}-n2"], check=True)  # half gone
        unhealthy = cli("lab", "status", "--name", name, check=False)
        assert unhealthy.returncode == 1
        assert "agent not running" in unhealthy.stdout
        assert "n2: namespace missing" in unhealthy.stdout
        assert "n1: underlay address" not in unhealthy.stdout  # n1's namespace is intact
    finally:
        cli("lab", "down", "--name", name, "--force")
    assert_gone(cli, name, state)


def test_bad_lab_requests_are_refused(cli: Cli) -> None:
    bad_set = cli("lab", "up", "--name", "tbad", "--set", "maglev.tableSize=1000", check=False)
    assert bad_set.returncode == 1
    assert "bpf-lb-maglev-table-size" in bad_set.stderr
    bad_nodes = cli("lab", "up", "--name", "tbad", "--nodes", "0", check=False)
    assert bad_nodes.returncode == 1 and "--nodes" in bad_nodes.stderr
    assert not any(ns.startswith("pl-tbad-") for ns in netns_list())
    assert cli("lab", "status", "--name", "tbad", check=False).returncode == 1


def test_down_force_after_up_was_killed(cli: Cli) -> None:
    """``lab up`` killed -9 half-way: the record it leaves is enough for ``down --force``."""
    name = f"tk{os.getpid() % 10000}"
    state_file = cli.home / "labs" / name / "lab.json"
    up = subprocess.Popen(
        [PYLIUM, "lab", "up", "--nodes", "2", "--name", name],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Wait (bounded) until the operator is recorded: agents are started after it.
        for _ in range(600):
            if up.poll() is not None:
                break
            try:
                if "operator" in json.loads(state_file.read_text())["pids"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        assert up.poll() is None, "lab up ended before it could be interrupted"
        up.kill()
        up.wait()
        state = json.loads(state_file.read_text())
        assert f"pl-{name}-fab" in state["netns"] and "operator" in state["pids"]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        cli("lab", "down", "--name", name, "--force")
    assert_gone(cli, name, state)


def test_up_refuses_namespaces_it_did_not_record(cli: Cli) -> None:
    """A leftover namespace of a lab whose state was lost is neither adopted nor deleted."""
    name = f"tl{os.getpid() % 1000000:06d}"
    leftover = f"pl-{name}-n1"
    subprocess.run(["ip", "netns", "add", leftover], check=True)
    try:
        refused = cli("lab", "up", "--name", name, "--nodes", "1", check=False)
        assert refused.returncode == 1
        assert leftover in refused.stderr and "no lab state records" in refused.stderr
        assert leftover in netns_list()
        assert f"pl-{name}-fab" not in netns_list()
        assert not (cli.home / "labs" / name).exists()
    finally:
        subprocess.run(["ip", "netns", "delete", leftover], check=True)
