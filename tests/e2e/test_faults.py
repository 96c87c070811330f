"""Faults: the agent killed -9 in the middle of a burst of CNI ADDs. The runtime then does what
the CNI spec asks (DEL for every failed ADD); after the agent's restart nothing leaks: every
IP, veth, endpoint-map entry and CiliumEndpoint belongs to a pod whose ADD succeeded, and
deleting those leaves the node as it was."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from pylium.adapters.maps import endpoints as epmap
from pylium.adapters.maps.base import open_pinned
from pylium.testing.cniruntime import CniAnswer, CniRuntime

from .conftest import Cli, LabHandle

pytestmark = [pytest.mark.root, pytest.mark.slow]

PODS = 8


def test_agent_killed_during_cni_add_burst_leaks_nothing(cli: Cli, lab: LabHandle) -> None:
    lab.up("--nodes", "1")
    namespaces = [f"pl-{lab.name}-x{i}" for i in range(PODS)]
    pids = lab.pids
    try:
        runtime = CniRuntime(lab.nodes["n1"]["netns"], lab.cni_config("n1"))
        for ns in namespaces:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        ids = [uuid.uuid4().hex for _ in range(PODS)]
        results: dict[int, CniAnswer] = {}

        def cni(command: str, i: int) -> CniAnswer:
            return runtime(runtime.env(command, ids[i], namespaces[i], f"burst-{i}"), exec=True)

        def add(i: int) -> None:
            results[i] = cni("ADD", i)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(PODS)]
        for i, t in enumerate(threads):
            t.start()
            time.sleep(0.05)
            if i == PODS // 2:
                os.kill(pids["agent-n1"], 9)  # in the middle of the burst
        for t in threads:
            t.join(150)
        cli("lab", "restart", "n1", "--name", lab.name)
        agent = lab.wait_agent_ready("n1")
        ok = [i for i in range(PODS) if results[i].code == 0]
        failed = [i for i in range(PODS) if results[i].code != 0]
        assert failed, "the kill came too late to interrupt any ADD; the test proves nothing"
        for i in failed:  # the runtime's duty after a failed ADD
            done = cni("DEL", i)
            assert done.code == 0, done.stdout

        def leftovers() -> dict[str, int]:
            pinned = open_pinned(str(lab.bpf_pins("n1") / epmap.NAME))
            entries = list(epmap.EndpointsMap(pinned).raw.iter_keys())
            return {
                "ips": agent.get("/v1/ipam")["used"] - 1,  # the router's
                "endpoints": len(agent.get("/v1/endpoint")),
                "veths": lab.lxc_links("n1"),
                "map": len(entries),
                "ceps": len(json.loads(cli("get", "cep", "-A", "-o", "json").stdout)["items"]),
            }

        assert leftovers() == dict.fromkeys(("ips", "endpoints", "veths", "map", "ceps"), len(ok))
        for i in ok:
            assert cni("DEL", i).code == 0
        assert leftovers() == dict.fromkeys(("ips", "endpoints", "veths", "map", "ceps"), 0)
    finally:
        for ns in namespaces:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
