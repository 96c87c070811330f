"""Network policy enforced by the eBPF datapath in a lab: a CiliumNetworkPolicy allowing one
client selects the server; the allowed client connects from another node, the other client
(same node as the server) is dropped with reason 133; a deny rule then stops even the allowed
client's established connection (181); deleting the policies restores reachability. The
agent reports per-endpoint enforcement; the policy maps hold what the core computed."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.adapters.maps import metrics
from pylium.adapters.maps.base import open_pinned

from .conftest import Cli
from .test_pods import NATIVE

pytestmark = [pytest.mark.root, pytest.mark.slow]

CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], 8080), timeout=float(sys.argv[2]))
    c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); print("ok" if c.recv(12) else "closed")
except OSError as err:
    print(type(err).__name__)
"""


def connect_from(cli: Cli, lab: str, pod: str, ip: str, timeout: float = 2.0) -> str:
    """``pod`` connects to ``ip``:8080 and sends a request (CONNECT): ``ok``, ``closed`` or
    the error's name (``TimeoutError`` when a policy drops it)."""
    argv = [sys.executable, "-c", CONNECT, ip, str(timeout)]
    return cli("lab", "pod", "exec", pod, "--name", lab, "--", *argv).stdout.strip()


ALLOW_CLIENT = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"""
DENY_CLIENT = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-deny, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: client}}]
"""


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


@pytest.mark.parametrize("mode", ["tunnel", "native"])
def test_policy_enforced_in_datapath(cli: Cli, mode: str, tmp_path: Path) -> None:
    lab = f"q{mode[0]}{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab, *(NATIVE if mode == "native" else ()))
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
        cli("lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client", "--name", lab)
        cli("lab", "pod", "run", "other", "--node", "n2", "--labels", "app=other", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        server_ip = state["pods"]["default/server"]["ip"]
        n2 = AgentClient(cli.home / "labs" / lab / "n2" / "pylium.sock", timeout=10)

        def connect(pod: str, timeout: float = 2.0) -> str:
            return connect_from(cli, lab, pod, server_ip, timeout)

        def explained(pod: str) -> tuple[bool, str]:
            out = cli(
                "policy",
                "explain",
                "--from",
                pod,
                "--to",
                "server",
                "--port",
                "8080/tcp",
                check=False,
            )
            assert out.returncode in (0, 1), out.stderr
            return out.returncode == 0, out.stdout

        def agree(pod: str, expected: bool) -> str:
            """The explainer's verdict is the datapath's: both are checked against traffic."""
            allowed, text = explained(pod)
            assert allowed is expected, text
            assert (connect(pod, timeout=1.0) == "ok") is expected
            return text

        def server_policy() -> dict[str, Any]:
            eps = {e["pod"]: e for e in n2.get("/v1/endpoint")}
            return eps["server"]["policy"] or {}

        # No policy: everything reaches the server, nothing is enforced.
        wait_for("the server to listen", lambda: connect("client") == "ok")
        assert connect("other") == "ok"
        assert server_policy()["ingress"] is False

        pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}/n2")
        drops = metrics.MetricsMap(open_pinned(str(pins / metrics.NAME)))
        before = drops.totals().get((133, 1), metrics.Counter(0, 0)).count

        (tmp_path / "allow.yaml").write_text(ALLOW_CLIENT)
        cli("apply", "-f", str(tmp_path / "allow.yaml"))
        wait_for("ingress enforcement", lambda: server_policy().get("ingress"))
        # across nodes, allowed by identity and port; same node, no rule allows it
        assert "by CiliumNetworkPolicy default/server-ingress[0] ingress[0]" in agree(
            "client", True
        )
        assert "drop reason 133" in agree("other", False)
        assert drops.totals()[(133, 1)].count > before
        server_ep = next(e for e in n2.get("/v1/endpoint") if e["pod"] == "server")
        client_identity = json.loads(cli("get", "cep", "client", "-o", "json").stdout)["status"][
            "identity"
        ]["id"]
        entries = cli(
            "bpf", "policy", "get", str(server_ep["endpoint_id"]), "--node", "n2", "--lab", lab
        ).stdout
        assert any(
            line.split() == ["Allow", "Ingress", str(client_identity), "8080/TCP", "24"]
            for line in entries.splitlines()
        ), entries
        assert "Enabled" in cli("endpoint", "list", "--node", "n2", "--lab", lab).stdout
        selectors = json.loads(cli("policy", "selectors", "-o", "json").stdout)
        assert [client_identity] in [
            s["identities"] for s in selectors if "app=client" in s["selector"]
        ]
        assert "server-ingress" in cli("policy", "get").stdout

        (tmp_path / "deny.yaml").write_text(DENY_CLIENT)
        cli("apply", "-f", str(tmp_path / "deny.yaml"))
        wait_for("the deny rule", lambda: connect("client", 1.0) == "TimeoutError", timeout=30)
        assert "by CiliumNetworkPolicy default/server-deny[0] ingressDeny[0]" in agree(
            "client", False
        )
        assert drops.totals()[(181, 1)].count > 0

        cli("delete", "cnp", "server-ingress", "server-deny")
        wait_for("enforcement to end", lambda: server_policy().get("ingress") is False)
        agree("client", True)
        agree("other", True)
    finally:
        cli("lab", "down", "--name", lab, check=False)
