"""The host firewall in a lab (``hostFirewall.enabled``): a CCNP whose nodeSelector picks n1
(by a label on its Node) lets into n1's host only pods labelled app=allowed on port 8081, plus
what the cluster needs (remote-node: the tunnel's UDP and the health checks, as upstream's
docs require). Checked from pods on both nodes (local ones through from-container, n2's through
the tunnel to n1's router IP with their identity, or masqueraded to n2's address, i.e.
remote-node), from outside, pod-to-pod across nodes, and against ``pylium policy explain``; in
tunnel and native routing (there n2's pods reach n1's router IP routed, their identity from the
ipcache at n1's device)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store

from .conftest import Cli
from .test_host import CONNECT
from .test_pods import NATIVE
from .test_policy import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

HOST_POLICY = """
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-fw}
spec:
  nodeSelector: {matchLabels: {hostfw: "on"}}
  ingress:
  - fromEntities: [remote-node, health]
  - fromEndpoints: [{matchLabels: {app: allowed}}]
    toPorts: [{ports: [{port: "8081", protocol: TCP}]}]
"""
CONNECT_8081 = CONNECT.replace("8080", "int(sys.argv[3])")


@pytest.mark.timeout(900)  # some twenty CLI calls: slow on a loaded 2-core machine
@pytest.mark.parametrize("mode", ["tunnel", "native"])
def test_host_firewall_from_pods_and_outside(cli: Cli, mode: str, tmp_path: Path) -> None:
    lab = f"f{mode[0]}{os.getpid() % 10000}"
    routing = NATIVE if mode == "native" else ()
    cli("lab", "up", "--nodes", "2", "--name", lab, "--set", "hostFirewall.enabled=true", *routing)
    server: subprocess.Popen[bytes] | None = None
    try:
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        store = open_store(state["store_url"])
        try:

            def label(body: dict[str, Any] | None) -> dict[str, Any]:
                assert body is not None
                body["metadata"].setdefault("labels", {})["hostfw"] = "on"
                return body

            ResourceClient(store).mutate("Node", "n1", fn=label)
        finally:
            store.close()
        http = (sys.executable, "-m", "http.server", "8080")
        for pod, node, app in (
            ("allowed", "n1", "allowed"),
            ("other", "n1", "other"),
            ("allowed2", "n2", "allowed"),
            ("other2", "n2", "other"),
            ("web", "n2", "web"),
        ):
            extra = ("--", *http) if pod == "web" else ()
            cli("lab", "pod", "run", pod, "--node", node, "--labels", f"app={app}", "--name", lab,
                *extra)  # fmt: skip
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        n1_netns = state["nodes"]["n1"]["netns"]
        n1_ip = state["nodes"]["n1"]["address"].split("/")[0]
        cn = json.loads(cli("get", "cn", "n1", "-o", "json").stdout)
        (router,) = [a["ip"] for a in cn["spec"]["addresses"] if a["type"] == "CiliumInternalIP"]
        web_ip = state["pods"]["default/web"]["ip"]
        server = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{n1_netns}", sys.executable, "-m", "http.server",
             "8081", "--bind", "0.0.0.0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def connect(pod: str, ip: str, port: int = 8081, timeout: float = 1.5) -> bool:
            out = cli("lab", "pod", "exec", pod, "--name", lab, "--", sys.executable, "-c",
                      CONNECT_8081, ip, str(timeout), str(port))  # fmt: skip
            return out.stdout.strip() == "ok"

        def from_outside(ip: str) -> bool:
            out = subprocess.run(
                ["nsenter", f"--net=/run/netns/pl-{lab}-fab", sys.executable, "-c",
                 CONNECT_8081, ip, "1.5", "8081"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            return out.stdout.strip() == "ok"

        def explain(pod: str) -> bool:
            out = cli("policy", "explain", "--from", pod, "--to", "host:n1", "--port",
                      "8081/tcp", check=False)  # fmt: skip
            assert out.returncode in (0, 1), out.stderr
            return out.returncode == 0

        # Host firewall on, no host policy: the host takes everything.
        wait_for("n1's host server", lambda: connect("other", n1_ip))
        assert from_outside(n1_ip)
        assert explain("other")

        (tmp_path / "hostfw.yaml").write_text(HOST_POLICY)
        cli("apply", "-f", str(tmp_path / "hostfw.yaml"))
        wait_for("the host policy", lambda: not connect("other", n1_ip, timeout=1.0), timeout=30)
        expected = {
            ("allowed", n1_ip): True,  # a local pod, through from-container
            ("other", n1_ip): False,
            ("allowed", router): True,
            ("allowed2", router): True,  # n2's pods keep their identity (tunnel, or routed)
            ("other2", router): False,
            ("other2", n1_ip): True,  # masqueraded to n2's address: remote-node
        }
        seen = {(pod, ip): connect(pod, ip) for pod, ip in expected}
        assert seen == expected
        assert not from_outside(n1_ip)  # world
        # The cluster still works: pod-to-pod across nodes rides the allowed tunnel.
        assert connect("allowed", web_ip, port=8080)
        assert connect("other", web_ip, port=8080)
        # The explainer says what the datapath did (identity-wise).
        assert explain("allowed") and explain("allowed2")
        assert not explain("other") and not explain("other2")
        # n2 has no hostfw label: its host is not enforced.
        status = json.loads(cli("policy", "explain", "--from", "other", "--to", "host:n2",
                                "--port", "8081/tcp", "-o", "json").stdout)  # fmt: skip
        assert status["allowed"] is True

        cli("delete", "-f", str(tmp_path / "hostfw.yaml"))
        wait_for("the policy gone", lambda: connect("other", n1_ip, timeout=1.0), timeout=30)
        assert from_outside(n1_ip)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        cli("lab", "down", "--name", lab, "--force", check=False)
