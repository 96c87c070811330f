"""The node's host in a lab: in tunnel mode a node's host reaches pods on other nodes through
cilium_host and the tunnel (each node's CiliumInternalIP in every ipcache), and the receiving
pod's policy judges it as remote-node, not as its own host (upstream's semantics)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Cli
from .test_policy import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], 8080), timeout=float(sys.argv[2]))
    c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); print("ok" if c.recv(12) else "closed")
except OSError as err:
    print(type(err).__name__)
"""


def from_netns(netns: str, ip: str, timeout: float = 2.0) -> str:
    out = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", CONNECT, ip, str(timeout)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def only_from(entity: str) -> str:
    return f"""
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: server-from-{entity}, namespace: default}}
spec:
  endpointSelector: {{matchLabels: {{app: server}}}}
  ingress:
  - fromEntities: [{entity}]
"""


def test_host_reaches_pods_on_other_nodes_in_tunnel_mode(cli: Cli, tmp_path: Path) -> None:
    lab = f"h{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab)
    try:
        http = (sys.executable, "-m", "http.server", "8080")
        cli(
            "lab",
            "pod",
            "run",
            "server",
            "--node",
            "n2",
            "--labels",
            "app=server",
            "--name",
            lab,
            "--",
            *http,
        )
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        server_ip = state["pods"]["default/server"]["ip"]
        n1, n2 = state["nodes"]["n1"]["netns"], state["nodes"]["n2"]["netns"]

        cn = json.loads(cli("get", "cn", "n1", "-o", "json").stdout)
        internal = [a for a in cn["spec"]["addresses"] if a["type"] == "CiliumInternalIP"]
        assert len(internal) == 1  # the router IP, cilium_host's address
        routes = subprocess.run(
            ["ip", "-n", n1, "route", "show", "dev", "cilium_host"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"via {internal[0]['ip']}" in routes and "mtu 1450" in routes, routes

        # No policy: the other node's host and the pod's own host both connect.
        wait_for("n1's host to reach the pod on n2", lambda: from_netns(n1, server_ip) == "ok")
        assert from_netns(n2, server_ip) == "ok"

        # The pod's policy sees n1's host as remote-node, not as host (its own host, n2's,
        # stays allowed either way: allow-localhost).
        (tmp_path / "host.yaml").write_text(only_from("host"))
        cli("apply", "-f", str(tmp_path / "host.yaml"))
        wait_for("host only", lambda: from_netns(n1, server_ip, 1.0) != "ok", timeout=30)
        assert from_netns(n2, server_ip) == "ok"
        (tmp_path / "remote.yaml").write_text(only_from("remote-node"))
        cli("apply", "-f", str(tmp_path / "remote.yaml"))
        wait_for("remote-node allowed", lambda: from_netns(n1, server_ip, 1.0) == "ok", timeout=30)
    finally:
        cli("lab", "down", "--name", lab, "--force", check=False)
