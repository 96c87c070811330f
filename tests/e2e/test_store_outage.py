"""Store outage: etcd frozen (SIGSTOP) or the SQLite file locked by another process's exclusive
transaction for 30 s. A TCP connection between pods on two nodes keeps flowing through it (the
datapath needs no store), the agents report the store as failing with what to do, and
afterwards they recover and catch up: ``pylium status`` is ready again, and a policy and a pod
created after the outage are enforced."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.adapters.maps import ipcache
from pylium.adapters.maps.base import open_pinned
from pylium.base.errors import PyliumError

from .conftest import HTTP_SERVER, PYLIUM, Cli, wait_for
from .test_pods import STREAM_CLIENT, STREAM_SERVER, in_netns, nsenter
from .test_policy import ALLOW_CLIENT, connect_from

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

OUTAGE = 30.0
LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def node_status(cli: Cli, lab: str, node: str) -> dict[str, Any]:
    out = cli("status", "--node", node, "--lab", lab, "-o", "json", check=False)
    return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}


@pytest.mark.parametrize("store", [pytest.param("etcd", marks=pytest.mark.etcd), "local"])
def test_traffic_survives_a_store_outage_and_agents_catch_up(
    cli: Cli, store: str, tmp_path: Path
) -> None:
    lab = f"so{store[0]}{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--store", store, "--name", lab)
    state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
    etcd_pid = state["pids"].get("etcd", 0)
    locker: subprocess.Popen[str] | None = None
    try:
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
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        client, server = state["pods"]["default/client"], state["pods"]["default/server"]
        pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}")
        n1_ipcache = ipcache.IPCacheMap(open_pinned(str(pins / "n1" / ipcache.NAME)))
        wait_for(
            "n1 to learn the server's endpoint",
            lambda: n1_ipcache.get(ipaddress.IPv4Network(f"{server['ip']}/32")) is not None,
        )
        server_proc = in_netns(server["netns"], STREAM_SERVER)
        time.sleep(0.3)
        talker = subprocess.Popen(
            [*nsenter(client["netns"]), sys.executable, "-c", STREAM_CLIENT, server["ip"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def round_trip(word: str) -> str:
            assert talker.stdin is not None and talker.stdout is not None
            talker.stdin.write(word + "\n")
            talker.stdin.flush()
            return talker.stdout.readline().strip()

        try:
            assert round_trip("before") == "BEFORE"
            # -- the outage ---------------------------------------------------------------
            cluster_view: subprocess.Popen[str] | None = None
            if store == "etcd":
                os.kill(etcd_pid, signal.SIGSTOP)
                # `pylium status` reads the store: it fails, saying what to check.
                cluster_view = subprocess.Popen(
                    [PYLIUM, "status"],
                    env=cli.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            else:
                locker = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        LOCKER,
                        state["store_url"].removeprefix("local:"),
                        str(OUTAGE),
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            n1_agent = AgentClient(cli.home / "labs" / lab / "n1" / "pylium.sock", timeout=10)
            started = time.monotonic()
            reported: dict[str, Any] = {}
            rounds = 0
            while time.monotonic() - started < OUTAGE:
                assert round_trip(f"during{rounds}") == f"DURING{rounds}"  # existing traffic
                rounds += 1
                if not reported:  # what `pylium status --node n1` prints, from the agent's API
                    kvstore = n1_agent.get("/v1/status").get("kvstore") or {}
                    if kvstore.get("state") == "Failure":
                        reported = kvstore
                time.sleep(1.0)
            assert reported, "n1's agent never reported the store as failing during the outage"
            if cluster_view is not None:
                _, err = cluster_view.communicate(timeout=120)
                assert cluster_view.returncode == 1, err
                assert "The store is failing" in err
            assert "store" in reported["hint"]
            if store == "etcd":
                os.kill(etcd_pid, signal.SIGCONT)
            else:
                assert locker is not None and locker.stdout is not None
                locker.wait(timeout=60)
                locker.stdout.close()
            # -- afterwards ---------------------------------------------------------------
            assert round_trip("after") == "AFTER"
            assert rounds >= 5
        finally:
            if talker.stdin is not None:
                talker.stdin.close()
            talker.wait(timeout=30)
            if talker.stdout is not None:
                talker.stdout.close()
            server_proc.kill()
            server_proc.communicate()
        ready = cli("status", "--wait", "--wait-duration", "3m", "-o", "json")
        assert json.loads(ready.stdout)["ready"] is True

        def store_ok(node: str) -> bool:
            return (node_status(cli, lab, node).get("kvstore") or {}).get("state") == "Ok"

        for node in ("n1", "n2"):
            wait_for(
                f"{node}'s store to be Ok again",
                partial(store_ok, node),
                timeout=60,
            )
        # Caught up: a policy and a pod created after the outage are enforced.
        server_ip = server["ip"]
        (tmp_path / "allow.yaml").write_text(ALLOW_CLIENT)
        cli("apply", "-f", str(tmp_path / "allow.yaml"))
        n2 = AgentClient(cli.home / "labs" / lab / "n2" / "pylium.sock", timeout=10)

        def server_policy() -> dict[str, Any]:
            try:
                eps = {e["pod"]: e for e in n2.get("/v1/endpoint")}
            except PyliumError:
                return {}
            return eps["server"]["policy"] or {}

        try:
            wait_for(
                "ingress enforcement on the server", lambda: server_policy().get("ingress"), 120
            )
        except AssertionError as err:
            log = (cli.home / "labs" / lab / "n2" / "agent.log").read_text().splitlines()
            raise AssertionError(f"{err}; n2's agent.log ends:\n" + "\n".join(log[-40:])) from None
        cli("lab", "pod", "run", "late", "--node", "n1", "-l", "app=late", "--name", lab)

        def connect(pod: str) -> str:
            return connect_from(cli, lab, pod, server_ip, 2.0)

        wait_for("the allowed client to connect", lambda: connect("client") == "ok", 60)
        assert connect("late") == "TimeoutError"  # its identity is not allowed: dropped
        late_ip = json.loads((cli.home / "labs" / lab / "lab.json").read_text())["pods"][
            "default/late"
        ]["ip"]
        assert late_ip
    finally:
        if etcd_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(etcd_pid, signal.SIGCONT)
        if locker is not None:
            if locker.poll() is None:
                locker.kill()
                locker.wait()
            if locker.stdout is not None:
                locker.stdout.close()
        cli("lab", "down", "--name", lab, check=False)
