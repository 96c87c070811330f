"""ClusterIP services end to end on a two-node lab with kube-proxy replacement: the operator
allocates the ClusterIP and derives the EndpointSlice from the Service's selector and the
pods, every agent writes its load-balancer maps, and socket-LB on the node's cgroup subtree
sends a client pod's connections to both backend pods (one per node, python http.server);
after a backend pod is deleted only the other one answers; no iptables or nftables rule was
made for the service. Once with random selection, once with Maglev (bpf-lb-algorithm=maglev,
the per-service annotation honoured, tables of 251 entries the same on both nodes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.base.errors import PyliumError

from .conftest import Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

BACKEND = """
import http.server, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""

CLIENT = """
import http.client, json, sys
vip, rounds = sys.argv[1], int(sys.argv[2])
port = int(sys.argv[3]) if len(sys.argv) > 3 else 80
names, peers, errors = [], [], []
for _ in range(rounds):
    try:
        c = http.client.HTTPConnection(vip, port, timeout=5); c.connect()
        peers.append(c.sock.getpeername()[0]); c.request("GET", "/")
        names.append(c.getresponse().read().decode()); c.close()
    except OSError as err:
        errors.append(str(err))
print(json.dumps({"names": names, "peers": peers, "errors": errors}))
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def run_client(cli: Cli, lab: str, vip: str, rounds: int, port: int = 80) -> dict[str, Any]:
    """The client script in the client pod through ``pylium lab pod exec`` (the pod's network
    namespace and cgroup, where socket-LB applies)."""
    argv = [sys.executable, "-c", CLIENT, vip, str(rounds), str(port)]
    result = cli("lab", "pod", "exec", "client", "--name", lab, "--", *argv)
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def listed(cli: Cli, lab: str) -> str:
    return cli("service", "list", "--node", "n1", "--lab", lab).stdout


def has_backends(cli: Cli, node: str, lab: str, count: int) -> Callable[[], bool]:
    return lambda: len(backends_listed(cli, node, lab)) == count


def agent_serves(lab_dir: Path) -> bool:
    """The node's agent answers GET /v1/service (its services engine is running)."""
    try:
        reply = AgentClient(lab_dir / "n1" / "pylium.sock", timeout=5).get("/v1/service")
    except PyliumError:
        return False
    return bool(reply.get("frontends"))


def pattern(table: list[str]) -> list[int]:
    """A table with each backend ID replaced by the order it first appears in."""
    first: dict[str, int] = {}
    return [first.setdefault(x, len(first)) for x in table]


def backends_listed(cli: Cli, node: str, lab: str) -> list[str]:
    result = cli("service", "list", "--node", node, "--lab", lab, "-o", "json", check=False)
    if result.returncode != 0:
        return []
    return [b for svc in json.loads(result.stdout) for b in svc["backends"]]


MAGLEV = (
    "--set",
    "loadBalancer.algorithm=maglev",
    "--set",
    "bpf.lbAlgorithmAnnotation=true",
    "--set",
    "maglev.tableSize=251",
)


@pytest.mark.timeout(600)  # a two-node lab, a restart and a NodePort: slow on a loaded VM
@pytest.mark.parametrize("algorithm", ["random", "maglev"])
def test_clusterip_through_socket_lb(cli: Cli, tmp_path: Path, algorithm: str) -> None:
    lab = f"s{algorithm[0]}{os.getpid() % 10000}"
    extra = MAGLEV if algorithm == "maglev" else ()
    cli("lab", "up", "--nodes", "2", "--name", lab, "--set", "kubeProxyReplacement=true", *extra)
    try:
        py = sys.executable
        for pod, node in (("web1", "n1"), ("web2", "n2")):
            cli("lab", "pod", "run", pod, "--node", node, "--labels", "app=web", "--name", lab,
                "--", py, "-c", BACKEND, pod)  # fmt: skip
        cli("lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())

        manifest = tmp_path / "svc.yaml"
        annotation = "  annotations:\n    service.cilium.io/lb-algorithm: maglev\n"
        text = SERVICE.replace("  namespace: default\n", "  namespace: default\n" + annotation)
        manifest.write_text(text if algorithm == "maglev" else SERVICE)
        cli("apply", "-f", str(manifest))

        def cluster_ip() -> str:
            svc = json.loads(cli("get", "svc", "web", "-o", "json").stdout)
            return str(svc["spec"].get("clusterIP") or "")

        vip = wait_for("the operator's ClusterIP", cluster_ip)
        assert vip.startswith("10.9")  # from 10.96.0.0/12
        pod_ips = sorted(state["pods"][f"default/{p}"]["ip"] for p in ("web1", "web2"))

        def slice_ips() -> bool:  # written by the operator just after the ClusterIP
            slices = json.loads(cli("get", "endpointslice", "-o", "json").stdout)["items"]
            return sorted(e["addresses"][0] for s in slices for e in s["endpoints"]) == pod_ips

        wait_for("the operator's EndpointSlice", slice_ips)
        for node in ("n1", "n2"):
            wait_for(f"{node}'s maps", has_backends(cli, node, lab, 2))
        listing = cli("service", "list", "--node", "n1", "--lab", lab).stdout
        assert listing.splitlines()[0].split() == ["ID", "Frontend", "Service", "Type", "Backend"]
        assert f"{vip}:80/TCP" in listing and "ClusterIP" in listing
        lb_list = cli("bpf", "lb", "list", "--node", "n1", "--lab", lab).stdout
        assert f"{vip}:80/TCP (0)" in lb_list and "[ClusterIP, non-routable]" in lb_list
        tables = [
            [
                line.split(None, 1)[1].strip("[]").split()
                for line in cli(
                    "bpf", "lb", "maglev", "list", "--node", n, "--lab", lab
                ).stdout.splitlines()[1:]
            ]
            for n in ("n1", "n2")
        ]
        if algorithm == "maglev":
            assert [len(t) for t in tables[0]] == [251] and len(set(tables[0][0])) == 2
            # the same table on both nodes (backend IDs are node-local: compare the patterns)
            assert pattern(tables[0][0]) == pattern(tables[1][0])
        else:
            assert tables == [[], []]

        wait_for("backends answering", lambda: run_client(cli, lab, vip, 1)["names"])
        out = run_client(cli, lab, vip, 30)
        assert not out["errors"], out
        assert set(out["names"]) == {"web1", "web2"}  # both nodes' backends
        assert set(out["peers"]) == {vip}  # getpeername shows the ClusterIP

        if algorithm == "random":
            # NodePort from a pod, to its own node's and the other node's address (socket-LB's
            # wildcard lookup: the destination is a node in the ipcache).
            manifest.write_text(
                SERVICE.replace("name: web\n", "name: web-np\n").replace(
                    "spec:\n", "spec:\n  type: NodePort\n"
                )
            )
            cli("apply", "-f", str(manifest))

            def node_port() -> int:
                svc = json.loads(cli("get", "svc", "web-np", "-o", "json").stdout)
                return int(svc["spec"]["ports"][0].get("nodePort") or 0)

            port = wait_for("the operator's NodePort", node_port)
            assert 30000 <= port <= 32767
            wait_for("n1's NodePort frontends", lambda: f":{port}/TCP" in listed(cli, lab))
            for node in ("n1", "n2"):
                address = state["nodes"][node]["address"].split("/")[0]
                out = run_client(cli, lab, address, 10, port)
                assert not out["errors"], out
                assert set(out["names"]) == {"web1", "web2"} and set(out["peers"]) == {address}
            cli("delete", "svc", "web-np")

            # The agent dies: attached hooks and pinned maps keep translating; after the
            # restart the IDs are the same (restored from the maps, nothing rewritten).
            os.kill(state["pids"]["agent-n1"], 9)
            out = run_client(cli, lab, vip, 10)
            assert not out["errors"] and set(out["names"]) == {"web1", "web2"}, out
            cli("lab", "restart", "n1", "--name", lab)
            wait_for("the restarted agent", lambda: agent_serves(cli.home / "labs" / lab))
            wait_for("web-np gone", lambda: "NodePort" not in listed(cli, lab))
            assert listed(cli, lab) == listing
            out = run_client(cli, lab, vip, 10)
            assert not out["errors"] and set(out["names"]) == {"web1", "web2"}, out

        # Scale down: only the remaining backend is chosen.
        cli("lab", "pod", "delete", "web2", "--name", lab)
        for node in ("n1", "n2"):
            wait_for(f"{node} drops web2", has_backends(cli, node, lab, 1))
        out = run_client(cli, lab, vip, 15)
        assert not out["errors"], out
        assert set(out["names"]) == {"web1"}

        # No iptables/nftables rule for the service: only pylium's masquerade table.
        for node in ("n1", "n2"):
            ruleset = subprocess.run(
                ["ip", "netns", "exec", state["nodes"][node]["netns"], "nft", "list", "tables"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split("\n")
            assert [t for t in ruleset if t.strip()] in ([], ["table ip pylium"]), ruleset
            rules = subprocess.run(
                ["ip", "netns", "exec", state["nodes"][node]["netns"], "nft", "list", "ruleset"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert vip not in rules
    finally:
        cli("lab", "down", "--name", lab, "--force", check=False)
