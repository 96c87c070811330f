"""Kube-proxy replacement features on a two-node lab, proven with real pods and socket-LB:

* ``internalTrafficPolicy: Local``: a client reaches only its own node's backend, on either
  node; with no local backend ``connect()`` fails with EHOSTUNREACH (upstream's answer).
* ``service.cilium.io/type: ClusterIP`` on a NodePort Service: only the ClusterIP frontend.
* ``service.cilium.io/node``: the Service is installed only on a node whose label of that name
  matches; labelling and unlabelling the Node takes effect without restarting the agent.
* Graceful termination: a hand-written EndpointSlice (a Service without selector) is changed
  while a client connects in a loop and holds connections open: a terminating backend gets no
  new connection while an active one is left, all the terminating-serving ones do when none is
  active, a terminating-not-serving one never does, and connections already made to a
  backend keep working after it is terminating and after it is removed; not one connection of
  the loop fails across the changes. A backend added meanwhile takes new connections.
* HostPort from the CNI ``portMappings`` capability with no portmap plugin: the agent's
  HostPort frontends answer on the node's address, no iptables/nftables rule is made, and the
  frontend goes with the pod.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.base.errors import PyliumError

from .conftest import PYLIUM, Cli
from .test_services import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERVER = """
import socketserver, sys
name = sys.argv[1].encode() + b"\\n"
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for _ in self.rfile:
            self.wfile.write(name)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("0.0.0.0", 8080), H).serve_forever()
"""

ONCE = """
import json, socket, sys
vip, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names, errors = [], []
for _ in range(rounds):
    try:
        c = socket.create_connection((vip, port), timeout=5)
        c.sendall(b"?\\n"); names.append(c.makefile().readline().strip()); c.close()
    except OSError as err:
        errors.append(err.errno)
print(json.dumps({"names": names, "errors": errors}))
"""

LOOP = """
import json, socket, sys, threading, time
vip, port = sys.argv[1], int(sys.argv[2])
phase, log, lock, held = ["start"], [], threading.Lock(), []
def ask(c):
    c.sendall(b"?\\n"); line = c.makefile().readline().strip()
    if not line:
        raise ConnectionError("closed")
    return line
def loop():
    while True:
        p = phase[0]
        try:
            c = socket.create_connection((vip, port), timeout=5); r = [p, ask(c), ""]; c.close()
        except OSError as err:
            r = [p, "", repr(err)]
        with lock:
            log.append(r)
        time.sleep(0.01)
threading.Thread(target=loop, daemon=True).start()
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "hold":
        for _ in range(int(arg)):
            held.append(socket.create_connection((vip, port), timeout=5))
        out = [ask(c) for c in held]
    elif cmd == "ping":
        out = []
        for c in held:
            try:
                out.append(ask(c))
            except OSError as err:
                out.append(repr(err))
    elif cmd == "phase":
        with lock:
            out, log[:] = list(log), []
            phase[0] = arg
    elif cmd == "wait":
        while sum(1 for r in list(log) if r[0] == phase[0]) < int(arg):
            time.sleep(0.05)
        out = []
    print(json.dumps(out), flush=True)
"""

GRACE_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: grace, namespace: default}
spec:
  clusterIP: 10.96.7.7
  ports: [{name: tcp, port: 80, targetPort: 8080}]
"""


def grace_slice(endpoints: dict[str, tuple[bool, bool, bool]], ips: dict[str, str]) -> str:
    """The EndpointSlice with each named pod's (ready, serving, terminating)."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "grace-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "grace"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "tcp", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [ips[name]],
                "conditions": {"ready": r, "serving": s, "terminating": t},
                "nodeName": "n1" if name == "web1" else "n2",
            }
            for name, (r, s, t) in endpoints.items()
        ],
    }
    return json.dumps(body)


class Lab:
    def __init__(self, cli: Cli, name: str, tmp_path: Path) -> None:
        self.cli, self.name, self.tmp = cli, name, tmp_path
        self.dir = cli.home / "labs" / name

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads((self.dir / "lab.json").read_text())
        return out

    def apply(self, text: str) -> None:
        path = self.tmp / "doc.yaml"
        path.write_text(text)
        self.cli("apply", "-f", str(path))

    def once(self, client: str, vip: str, port: int, rounds: int) -> dict[str, Any]:
        argv = [sys.executable, "-c", ONCE, vip, str(port), str(rounds)]
        out: dict[str, Any] = json.loads(
            self.cli("lab", "pod", "exec", client, "--name", self.name, "--", *argv).stdout
        )
        return out

    def agent_services(self, node: str) -> dict[str, list[str]]:
        """Frontend -> backends with states, from the agent's rows (its last sync)."""
        try:
            text = AgentClient(self.dir / node / "pylium.sock", timeout=5).get("/v1/service")
        except PyliumError:
            return {}
        out: dict[str, list[str]] = {}
        current = ""
        for line in str(text["text"]).splitlines()[1:]:
            cells = line.split()  # ID Frontend Type [N => backend (state)] | N => ...
            if cells and cells[1:2] != ["=>"]:
                current = cells[1]
                out[current] = []
            if "=>" in cells:
                i = cells.index("=>")
                out[current].append(f"{cells[i + 1]} {cells[i + 2]}")
        return out

    def frontends(self, node: str) -> set[str]:
        return set(self.agent_services(node))


@pytest.mark.timeout(1200)  # six pods, twenty-odd CLI calls and a client loop on a loaded VM
def test_kube_proxy_replacement_features(cli: Cli, tmp_path: Path) -> None:
    name = f"kcp{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", name, "--set", "kubeProxyReplacement=true")
    lab = Lab(cli, name, tmp_path)
    loop: subprocess.Popen[str] | None = None
    try:
        py = sys.executable
        for pod, node in (("web1", "n1"), ("web2", "n2"), ("web3", "n2")):
            cli("lab", "pod", "run", pod, "--node", node, "--labels", f"app=web,name={pod}",
                "--name", name, "--", py, "-c", SERVER, pod)  # fmt: skip
        cli("lab", "pod", "run", "hp", "--node", "n1", "--hostport", "4000:8080", "--name", name,
            "--", py, "-c", SERVER, "hp")  # fmt: skip
        for pod, node in (("client", "n1"), ("client2", "n2")):
            cli("lab", "pod", "run", pod, "--node", node, "--name", name)
        state = lab.state()
        ips = {p.split("/")[1]: info["ip"] for p, info in state["pods"].items()}
        n1 = state["nodes"]["n1"]["address"].split("/")[0]

        # -- HostPort from the CNI portMappings capability, no portmap plugin ------------
        conflist = json.loads((lab.dir / "n1" / "cni" / "net.d" / "05-cilium.conflist").read_text())
        assert [p["type"] for p in conflist["plugins"]] == ["cilium-cni"]
        assert conflist["plugins"][0]["capabilities"] == {"portMappings": True}
        wait_for("n1's HostPort frontend", lambda: f"{n1}:4000/TCP" in lab.frontends("n1"))
        assert lab.agent_services("n1")[f"{n1}:4000/TCP"] == [f"{ips['hp']}:8080/TCP (active)"]
        assert "0.0.0.0:4000/TCP" in lab.frontends("n1")
        assert not any(":4000/" in f for f in lab.frontends("n2"))  # the pod's node only
        wait_for("the hostPort answering", lambda: lab.once("client", n1, 4000, 1)["names"])
        out = lab.once("client", n1, 4000, 5)
        assert out == {"names": ["hp"] * 5, "errors": []}
        netns = state["nodes"]["n1"]["netns"]
        for argv in (["iptables-save"], ["nft", "list", "ruleset"]):
            rules = subprocess.run(
                ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False
            ).stdout
            assert "4000" not in rules and ips["hp"] not in rules, rules
        cli("lab", "pod", "delete", "hp", "--name", name)
        wait_for("the HostPort gone", lambda: not any(":4000/" in f for f in lab.frontends("n1")))

        # -- internalTrafficPolicy: Local --------------------------------------------------
        lab.apply(
            "apiVersion: v1\nkind: Service\nmetadata: {name: itp, namespace: default}\n"
            "spec:\n  clusterIP: 10.96.7.1\n  internalTrafficPolicy: Local\n"
            "  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n"
            "---\n"
            "apiVersion: v1\nkind: Service\nmetadata: {name: itp-n2, namespace: default}\n"
            "spec:\n  clusterIP: 10.96.7.2\n  internalTrafficPolicy: Local\n"
            "  selector: {name: web2}\n  ports: [{port: 80, targetPort: 8080}]\n"
        )

        def local_backends(node: str, count: int) -> Callable[[], bool]:
            return lambda: len(lab.agent_services(node).get("10.96.7.1:80/TCP", [])) == count

        wait_for("n1's local backend", local_backends("n1", 1))
        wait_for("n2's local backends", local_backends("n2", 2))
        wait_for("n2's itp-n2", lambda: lab.agent_services("n2").get("10.96.7.2:80/TCP"))
        assert lab.agent_services("n1")["10.96.7.2:80/TCP"] == []  # no local backend
        out = lab.once("client", "10.96.7.1", 80, 20)
        assert out == {"names": ["web1"] * 20, "errors": []}
        out = lab.once("client2", "10.96.7.1", 80, 30)
        assert not out["errors"] and set(out["names"]) == {"web2", "web3"}, out
        out = lab.once("client2", "10.96.7.2", 80, 5)
        assert out == {"names": ["web2"] * 5, "errors": []}
        out = lab.once("client", "10.96.7.2", 80, 3)
        assert out == {"names": [], "errors": [113] * 3}  # EHOSTUNREACH, no remote fallback

        # -- service.cilium.io/type ---------------------------------------------------------
        lab.apply(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: only-cip\n  namespace: default\n"
            "  annotations: {service.cilium.io/type: ClusterIP}\n"
            "spec:\n  type: NodePort\n  clusterIP: 10.96.7.3\n  selector: {name: web1}\n"
            "  ports: [{port: 80, targetPort: 8080, nodePort: 31777}]\n"
        )
        wait_for("only-cip on n1", lambda: "10.96.7.3:80/TCP" in lab.frontends("n1"))
        assert not any(f.endswith(":31777/TCP") for f in lab.frontends("n1"))
        assert lab.once("client", "10.96.7.3", 80, 2) == {"names": ["web1"] * 2, "errors": []}

        # -- service.cilium.io/node, relabelled without an agent restart ---------------------
        agents = {n: state["pids"][f"agent-{n}"] for n in ("n1", "n2")}
        lab.apply(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: pinned\n  namespace: default\n"
            "  annotations: {service.cilium.io/node: edge}\n"
            "spec:\n  clusterIP: 10.96.7.4\n  selector: {name: web1}\n"
            "  ports: [{port: 80, targetPort: 8080}]\n"
        )
        wait_for("only-cip on n2", lambda: "10.96.7.3:80/TCP" in lab.frontends("n2"))
        assert "10.96.7.4:80/TCP" not in lab.frontends("n1") | lab.frontends("n2")

        def label_n1(value: str | None) -> None:
            node = json.loads(cli("get", "node", "n1", "-o", "json").stdout)
            labels = node["metadata"].setdefault("labels", {})
            labels.pop("service.cilium.io/node", None)
            if value is not None:
                labels["service.cilium.io/node"] = value
            lab.apply(json.dumps(node))

        label_n1("edge")
        wait_for("pinned on n1", lambda: "10.96.7.4:80/TCP" in lab.frontends("n1"))
        assert lab.once("client", "10.96.7.4", 80, 2) == {"names": ["web1"] * 2, "errors": []}
        label_n1("core")
        wait_for("pinned gone", lambda: "10.96.7.4:80/TCP" not in lab.frontends("n1"))
        assert "10.96.7.4:80/TCP" not in lab.frontends("n2")
        assert {n: lab.state()["pids"][f"agent-{n}"] for n in agents} == agents

        # -- graceful termination while a client loops --------------------------------------
        all_ready = {"web1": (True, True, False), "web2": (True, True, False)}
        lab.apply(GRACE_SERVICE + "---\n" + grace_slice(all_ready, ips))

        def agent_has(backends: dict[str, str]) -> Callable[[], bool]:
            want = sorted(f"{ips[p]}:8080/TCP ({s})" for p, s in backends.items())
            return lambda: sorted(lab.agent_services("n1").get("10.96.7.7:80/TCP", [])) == want

        wait_for("grace on n1", agent_has({"web1": "active", "web2": "active"}))
        argv = [py, "-c", LOOP, "10.96.7.7", "80"]
        loop = subprocess.Popen(
            [PYLIUM, "lab", "pod", "exec", "client", "--name", name, "--", *argv],
            env=cli.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdin, stdout = loop.stdin, loop.stdout
        assert stdin is not None and stdout is not None

        def ask(command: str, io: tuple[IO[str], IO[str]] = (stdin, stdout)) -> Any:
            io[0].write(command + "\n")
            io[0].flush()
            return json.loads(io[1].readline())

        records: list[list[str]] = []

        def phase(label: str, samples: int = 30) -> None:
            records.extend(ask(f"phase {label}"))
            ask(f"wait {samples}")

        def names(label: str) -> set[str]:
            return {r[1] for r in records if r[0] == label}

        phase("all-active")
        held = ask("hold 16")
        assert set(held) == {"web1", "web2"}, held  # 16 random picks: both (p = 1 - 2^-15)

        steps: list[tuple[str, dict[str, tuple[bool, bool, bool]], dict[str, str]]] = [
            (
                "web2-terminating",
                {"web1": (True, True, False), "web2": (False, True, True)},
                {"web1": "active", "web2": "terminating"},
            ),
            (
                "web3-added",
                {
                    "web1": (True, True, False),
                    "web2": (False, True, True),
                    "web3": (True, True, False),
                },
                {"web1": "active", "web2": "terminating", "web3": "active"},
            ),
            (
                "all-terminating",
                {k: (False, True, True) for k in ("web1", "web2", "web3")},
                {"web1": "terminating", "web2": "terminating", "web3": "terminating"},
            ),
            (
                "web2-not-serving",
                {
                    "web1": (False, True, True),
                    "web2": (False, False, True),
                    "web3": (False, True, True),
                },
                {"web1": "terminating", "web2": "terminating-not-serving", "web3": "terminating"},
            ),
            (
                "web2-removed",
                {"web1": (True, True, False), "web3": (True, True, False)},
                {"web1": "active", "web3": "active"},
            ),
        ]
        for label, conditions, states in steps:
            # Connections made while the change is on its way are only checked for errors.
            records.extend(ask(f"phase before-{label}"))
            lab.apply(grace_slice(conditions, ips))
            wait_for(f"n1 in {label}", agent_has(states))
            phase(label)
            assert ask("ping") == held, label  # held connections all still answer
        records.extend(ask("phase end"))

        assert names("all-active") == {"web1", "web2"}
        assert names("web2-terminating") == {"web1"}
        assert names("web3-added") == {"web1", "web3"}
        assert names("all-terminating") == {"web1", "web2", "web3"}  # upstream's fallback
        assert names("web2-not-serving") == {"web1", "web3"}
        assert names("web2-removed") == {"web1", "web3"}
        failed = [r for r in records if r[2]]
        assert not failed, failed[:5]  # not one connection failed across the changes
        assert len(records) >= 6 * 30
    finally:
        if loop is not None:
            loop.kill()
            loop.communicate()
        cli("lab", "down", "--name", name, "--force", check=False)
