"""A node removed from the cluster (`pylium lab node remove`) is cleaned up everywhere: the
other agents drop its pod-CIDR routes, its ipcache entries (node IP, router IP, pods) and stop
probing it; the operator frees its pod CIDR (the next node added gets it) and deletes what it
held in the store (IP allocations, endpoint records, identity references, CiliumEndpoints);
the node's namespace and BPF pins are gone, also on a node whose agent was down meanwhile.
The cluster keeps working around it."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.adapters.maps import ipcache
from pylium.adapters.maps.base import open_pinned
from pylium.adapters.store.factory import open_store
from pylium.base.errors import PyliumError

from .conftest import HTTP_SERVER, Cli, wait_for
from .test_policy import connect_from

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]


def routes(netns: str) -> set[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "route", "show"], capture_output=True, text=True, check=True
    )
    return {
        ipaddress.IPv4Network(r["dst"]) for r in json.loads(out.stdout) if "/" in r.get("dst", "")
    }


def probed(sock: Path) -> set[str]:
    try:
        data = AgentClient(sock, timeout=10).get("/v1/health")
    except PyliumError:
        return set()
    return {n["name"] for n in data.get("nodes") or []}


def test_removed_node_is_cleaned_up_everywhere(cli: Cli) -> None:
    lab = f"nr{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "3", "--name", lab)
    lab_dir = cli.home / "labs" / lab
    pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}")
    state: dict[str, Any] = json.loads((lab_dir / "lab.json").read_text())
    db = open_store(state["store_url"])
    try:
        cli("lab", "pod", "run", "a", "--node", "n1", "-l", "app=a", "--name", lab)
        cli(
            "lab",
            "pod",
            "run",
            "b",
            "--node",
            "n2",
            "-l",
            "app=b",
            "--name",
            lab,
            "--",
            *HTTP_SERVER,
        )
        cli(
            "lab",
            "pod",
            "run",
            "c",
            "--node",
            "n3",
            "-l",
            "app=c",
            "--name",
            lab,
            "--",
            *HTTP_SERVER,
        )
        state = json.loads((lab_dir / "lab.json").read_text())
        n3 = json.loads(cli("get", "ciliumnode", "n3", "-o", "json").stdout)
        n3_cidr = ipaddress.IPv4Network(n3["spec"]["ipam"]["podCIDRs"][0])
        n3_ips = {
            ipaddress.IPv4Network(f"{a['ip']}/32")
            for a in n3["spec"]["addresses"]
            if a["type"] in ("InternalIP", "CiliumInternalIP")
        }
        assert len(n3_ips) == 2
        c_ip = ipaddress.IPv4Network(f"{state['pods']['default/c']['ip']}/32")
        others = ("n1", "n2")
        caches = {n: ipcache.IPCacheMap(open_pinned(str(pins / n / ipcache.NAME))) for n in others}

        def knows_n3(node: str) -> bool:
            entries = caches[node].dump()
            return (
                {c_ip, *n3_ips} <= set(entries)
                and n3_cidr in routes(state["nodes"][node]["netns"])
                and "n3" in probed(lab_dir / node / "pylium.sock")
            )

        for node in others:
            wait_for(f"{node} to know n3 (ipcache, route, probes)", partial(knows_n3, node), 60)
        assert db.list("ipam/n3/").items and db.list("endpoints/n3/").items

        # n2's agent is down while n3 goes: after its restart it must still drop n3's route.
        os.kill(state["pids"]["agent-n2"], 9)
        cli("lab", "node", "remove", "n3", "--name", lab)
        cli("lab", "restart", "n2", "--name", lab)

        def forgot_n3(node: str) -> bool:
            entries = caches[node].dump()
            return (
                not ({c_ip, *n3_ips} & set(entries))
                and n3_cidr not in routes(state["nodes"][node]["netns"])
                and "n3" not in probed(lab_dir / node / "pylium.sock")
            )

        for node in others:
            wait_for(f"{node} to forget n3", partial(forgot_n3, node), 60)

        def store_clean() -> bool:
            refs = [kv.key for kv in db.list("identities/refs/").items if kv.key.endswith("/n3")]
            return not (db.list("ipam/n3/").items or db.list("endpoints/n3/").items or refs)

        wait_for("the operator to clear n3's state in the store", store_clean, 60)
        ceps = json.loads(cli("get", "cep", "-A", "-o", "json").stdout)["items"]
        assert sorted(c["metadata"]["name"] for c in ceps) == ["a", "b"]
        assert "c" not in {
            p["metadata"]["name"]
            for p in json.loads(cli("get", "pod", "-A", "-o", "json").stdout)["items"]
        }
        assert (
            f"pl-{lab}-n3"
            not in subprocess.run(
                ["ip", "netns", "list"], capture_output=True, text=True, check=True
            ).stdout
        )
        assert not (pins / "n3").exists()
        lab_status = json.loads(cli("lab", "status", "--name", lab, "-o", "json").stdout)
        assert [n["name"] for n in lab_status["nodes"]] == ["n1", "n2"]
        assert lab_status["healthy"]

        # The freed CIDR goes to the next node, which joins the cluster like the others.
        cli("lab", "node", "add", "n4", "--name", lab)
        n4 = json.loads(cli("get", "ciliumnode", "n4", "-o", "json").stdout)
        assert n4["spec"]["ipam"]["podCIDRs"] == [str(n3_cidr)]
        cli(
            "lab",
            "pod",
            "run",
            "d",
            "--node",
            "n4",
            "-l",
            "app=d",
            "--name",
            lab,
            "--",
            *HTTP_SERVER,
        )
        d_ip = json.loads((lab_dir / "lab.json").read_text())["pods"]["default/d"]["ip"]
        assert ipaddress.ip_address(d_ip) in n3_cidr

        def connect(pod: str, ip: str) -> str:
            return connect_from(cli, lab, pod, ip, 2.0)

        b_ip = state["pods"]["default/b"]["ip"]
        wait_for("a to reach d on the new node", lambda: connect("a", d_ip) == "ok", 60)
        assert connect("a", b_ip) == "ok"
        status = json.loads(cli("status", "--wait", "--wait-duration", "2m", "-o", "json").stdout)
        assert status["daemonsets"]["cilium"]["desired"] == 3
    finally:
        db.close()
        cli("lab", "down", "--name", lab, check=False)
