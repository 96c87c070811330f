"""End-to-end fixtures: a private PYLIUM_HOME per test so that labs never touch a user's, and
the pieces several e2e tests share: a lab torn down whatever happens (:class:`LabHandle`), a
wait loop with a deadline, the HTTP server pod and the client snippets that probe it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.base.errors import PyliumError

PYLIUM = str(Path(sys.executable).with_name("pylium"))
HTTP_SERVER = (sys.executable, "-m", "http.server", "8080")
"""A pod's command line serving HTTP on 8080."""
FETCH = (
    "import sys, urllib.request\n"
    "url, timeout = f'http://{sys.argv[1]}:8080/', float(sys.argv[2])\n"
    "try: print(urllib.request.urlopen(url, timeout=timeout).status)\n"
    "except OSError as e: print(type(e).__name__)\n"
)
"""``python -c FETCH IP TIMEOUT``: the HTTP status from IP:8080, or the error's type name."""
DENY_SERVER_INGRESS = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: nobody}}]
"""
"""A policy that lets nobody reach the pods labelled app=server."""

T = TypeVar("T")


class Cli:
    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "PYLIUM_STORE"}
        self.env["PYLIUM_HOME"] = str(home)
        self.home = home

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYLIUM, *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if check and result.returncode != 0:
            pytest.fail(f"pylium {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def lab_state(self, lab: str) -> dict[str, Any]:
        """The lab's lab.json (nodes, pids, pods, store)."""
        state: dict[str, Any] = json.loads((self.home / "labs" / lab / "lab.json").read_text())
        return state


def wait_for(what: str, check: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def links(netns: str, kind: str = "") -> int:
    """How many links (whose name starts with ``kind``) the namespace has."""
    out = subprocess.run(
        ["ip", "-n", netns, "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    return sum(1 for line in out.splitlines() if line.split(": ")[1].startswith(kind))


class LabHandle:
    """A lab of this test's (``name`` unique), brought down after the test whatever happened."""

    def __init__(self, cli: Cli, name: str) -> None:
        self.cli = cli
        self.name = name
        self.started = False

    def up(self, *args: str) -> None:
        self.started = True
        self.cli("lab", "up", "--name", self.name, *args)

    def down(self) -> None:
        if self.started:
            self.cli("lab", "down", "--name", self.name, check=False)
            self.started = False

    @property
    def state(self) -> dict[str, Any]:
        return self.cli.lab_state(self.name)

    @property
    def nodes(self) -> dict[str, dict[str, str]]:
        """node -> netns, address (with its prefix length), ip, state_dir."""
        nodes: dict[str, dict[str, str]] = self.state["nodes"]
        for node in nodes.values():
            node["ip"] = node["address"].split("/")[0]
        return nodes

    @property
    def pids(self) -> dict[str, int]:
        pids: dict[str, int] = self.state["pids"]
        return pids

    @property
    def store_url(self) -> str:
        return str(self.state["store_url"])

    def dir(self, node: str) -> Path:
        return self.cli.home / "labs" / self.name / node

    def agent(self, node: str, timeout: float = 10) -> AgentClient:
        return AgentClient(self.dir(node) / "pylium.sock", timeout=timeout)

    def wait_agent_ready(self, node: str, timeout: float = 40) -> AgentClient:
        """The node's agent once its datapath is up (after lab up or a restart)."""
        agent = self.agent(node)

        def ready() -> bool:
            try:
                return bool(agent.get("/v1/healthz")["datapath"]["state"] == "Ok")
            except PyliumError:
                return False

        wait_for(f"the agent of {node}", ready, timeout)
        return agent

    def cni_config(self, node: str) -> dict[str, Any]:
        """The network configuration a runtime passes to pylium-cni: the node's conflist's
        first plugin with the list's name and version (written once the datapath is ready)."""
        path = self.dir(node) / "cni" / "net.d" / "05-cilium.conflist"
        wait_for("the agent's CNI configuration", path.exists, 30)
        conflist = json.loads(path.read_text())
        first: dict[str, Any] = conflist["plugins"][0]
        return {"cniVersion": conflist["cniVersion"], "name": conflist["name"]} | first

    def bpf_pins(self, node: str) -> Path:
        return Path(f"/sys/fs/bpf/pylium-lab-{self.name}/{node}")

    def lxc_links(self, node: str) -> int:
        return links(self.nodes[node]["netns"], "lxc")

    def links(self, netns: str) -> int:
        return links(netns)

    def wait_for(self, what: str, check: Callable[[], T], timeout: float = 20.0) -> T:
        return wait_for(what, check, timeout)

    def run_pod(self, pod: str, node: str, *args: str, labels: str = "") -> str:
        """``pylium lab pod run`` (labels ``a=b,c=d``; args after ``--`` the pod's command);
        returns the pod's IP."""
        extra = ("--labels", labels) if labels else ()
        command = ("--", *args) if args else ()
        self.cli("lab", "pod", "run", pod, "--node", node, *extra, "--name", self.name, *command)
        return str(self.state["pods"][f"default/{pod}"]["ip"])

    def exec(self, pod: str, *argv: str) -> str:
        """``pylium lab pod exec``: the command's stdout."""
        return self.cli("lab", "pod", "exec", pod, "--name", self.name, "--", *argv).stdout


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@pytest.fixture
def lab(cli: Cli) -> Iterator[LabHandle]:
    handle = LabHandle(cli, "e" + uuid.uuid4().hex[:7])
    try:
        yield handle
    finally:
        handle.down()
