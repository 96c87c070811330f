"""1,000 pod create/delete cycles leave no leak (issue 8).

A one-node lab; pods are made and removed over the CNI wire protocol (ADD then DEL, as a
runtime does), a few runtimes in parallel, each pod with labels of its own so that every cycle
allocates a fresh security identity; every tenth pod sends a UDP datagram and opens a TCP
connection so that it leaves conntrack entries behind. Every fiftieth cycle executes the
``pylium-cni`` binary itself; the others go through one long-lived runtime process per worker
(:mod:`pylium.testing.cniruntime`) that runs the plugin's entry point on the same environment
and stdin. Afterwards, compared with the node after a warm-up:

* IPAM: no pod IP allocated; no endpoint in the agent, no CiliumEndpoint in the store;
* identities: once the operator's identity GC ran, none of the churn's remains, and no node
  reference to one is left;
* devices: no ``lxc`` veth in the node, nothing but ``lo`` in the pods' namespaces;
* BPF maps: no endpoint-map, ipcache or per-endpoint policy-map entry, no pinned policy map and
  no conntrack entry from or to any IP a pod held;
* the agent process: open file descriptors and threads bounded relative to the start, and its
  RSS growth bounded (the figure per 1,000 cycles is printed with ``-s``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.maps import ct, ipcache
from pylium.adapters.maps import endpoints as epmap
from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.maps.base import open_pinned
from pylium.adapters.store import open_store
from pylium.testing.cniruntime import CniRuntime

from .conftest import Cli, LabHandle

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(900)]

CYCLES = 1000
WARM_UP = 30
WORKERS = 3
EXEC_EVERY = 50
TRAFFIC_EVERY = 10
FD_SLACK = 16
"""Open descriptors the agent may hold beyond the warm-up's: API connections in flight,
the store's, the health prober's sockets."""
THREAD_SLACK = 8
RSS_LIMIT_MIB = 48
"""Growth of the agent's resident memory over the 1,000 cycles (measured: see docs/operations.md).
A per-cycle leak of a 1,000-entry list, a record or a BPF object would exceed it."""
TRAFFIC = """
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (sys.argv[1], 9))
c = socket.socket()
c.settimeout(2)
try:
    c.connect((sys.argv[2], 4240))
except OSError:
    pass
"""


def proc_status(pid: int) -> dict[str, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
        "rss_kib": int(fields["VmRSS"].split()[0]),
    }


def test_thousand_pod_cycles_leak_nothing(cli: Cli, lab: LabHandle) -> None:
    lab.up(
        "--nodes",
        "1",
        "--set",
        "operator.identityGCInterval=2s",
        "--set",
        "operator.identityHeartbeatTimeout=1s",
    )
    node = lab.nodes["n1"]
    agent = lab.wait_agent_ready("n1")
    config = lab.cni_config("n1")
    pins = lab.bpf_pins("n1")
    agent_pid = lab.pids["agent-n1"]
    netns = [f"pl-{lab.name}-w{w}" for w in range(WORKERS)]
    runtimes = [CniRuntime(node["netns"], config) for _ in range(WORKERS)]
    held: set[ipaddress.IPv4Address] = set()

    def cycle(worker: int, i: int) -> None:
        rt, ns, cid = runtimes[worker], netns[worker], uuid.uuid4().hex
        conf = config | {"labels": {"app": f"churn-{i}"}}
        exec_ = i % EXEC_EVERY == 0
        added = rt(rt.env("ADD", cid, ns, f"churn-{i}"), config=conf, exec=exec_)
        assert added.code == 0, f"ADD of pod {i}: {added.stdout}"
        result = added.json()["ips"][0]
        ip = ipaddress.IPv4Interface(result["address"]).ip
        held.add(ip)
        if i % TRAFFIC_EVERY == 0:
            endpoint = agent.get(f"/v1/endpoint/{cid}")  # an identity of its own
            assert f"k8s:app=churn-{i}" in endpoint["labels"] and endpoint["identity"] >= 256
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "python3",
                    "-c",
                    TRAFFIC,
                    result["gateway"],
                    node["ip"],
                ],
                check=True,
                timeout=30,
            )
            if i % (10 * TRAFFIC_EVERY) == 0:  # else the check after the churn proves nothing
                assert len(ct_entries_of({ip})) >= 2, "the pod's traffic made no CT entries"
        deleted = rt(rt.env("DEL", cid, ns, f"churn-{i}"), config=conf, exec=exec_)
        assert deleted.code == 0, f"DEL of pod {i}: {deleted.stdout}"

    def run(first: int, count: int) -> None:
        def worker(w: int) -> None:
            for i in range(first + w, first + count, WORKERS):
                cycle(w, i)

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(worker, range(WORKERS)))

    def churn_identities() -> list[str]:
        """CiliumIdentities of the churn's pods (numbers are reused once GC frees them)."""
        out = cli("get", "ciliumidentities", "-o", "json").stdout
        return [
            item["metadata"]["name"]
            for item in json.loads(out)["items"]
            if str(item["security-labels"].get("k8s:app", "")).startswith("churn-")
        ]

    def ct_entries_of(ips: set[ipaddress.IPv4Address]) -> list[ct.Tuple]:
        return [
            t
            for name in (ct.TCP_NAME, ct.ANY_NAME)
            for t in ct.CTMap(open_pinned(str(pins / name)), name).dump()
            if t.saddr in ips or t.daddr in ips
        ]

    def map_keys(name: str) -> int:
        return sum(1 for _ in epmap.EndpointsMap(open_pinned(str(pins / name))).raw.iter_keys())

    try:
        for ns in netns:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        run(0, WARM_UP)  # first use fills caches and opens connections: not a leak
        ipcache_before = ipcache.IPCacheMap(open_pinned(str(pins / ipcache.NAME))).dump()
        before = proc_status(agent_pid)
        started = time.monotonic()
        run(WARM_UP, CYCLES)
        elapsed = time.monotonic() - started
        after = proc_status(agent_pid)
        assert len(held) > 1, "pods were given no IPs"
        assert ct_entries_of(held) == [], "conntrack entries of deleted pods"
        leftovers: dict[str, Any] = {
            "ips": agent.get("/v1/ipam")["used"] - 1,  # the router's
            "endpoints": len(agent.get("/v1/endpoint")),
            "ceps": len(json.loads(cli("get", "cep", "-A", "-o", "json").stdout)["items"]),
            "veths": lab.lxc_links("n1"),
            "pod-netns-links": sum(lab.links(ns) - 1 for ns in netns),  # lo stays
            "endpoint-map": map_keys(epmap.NAME),
            "policy-maps": len(policy_maps.PolicyMaps.from_pins(pins).endpoints()),
            "policy-pins": len(list(pins.glob(f"{policy_maps.NAME}_*"))),
        }
        assert leftovers == dict.fromkeys(leftovers, 0)
        ipcache_after = ipcache.IPCacheMap(open_pinned(str(pins / ipcache.NAME))).dump()
        assert {p for p in ipcache_after if p.network_address in held} == set()
        assert set(ipcache_after) <= set(ipcache_before)

        lab.wait_for("the identity GC", lambda: not churn_identities(), timeout=120)
        store = open_store(lab.store_url)
        try:
            refs = store.list("identities/refs/").items
        finally:
            store.close()
        assert [kv.key for kv in refs] == []

        rss_mib = (after["rss_kib"] - before["rss_kib"]) / 1024 * 1000 / CYCLES
        print(
            f"\nchurn: {CYCLES} cycles in {elapsed:.0f} s; agent fds {before['fds']} -> "
            f"{after['fds']}, threads {before['threads']} -> {after['threads']}, RSS "
            f"{before['rss_kib'] / 1024:.1f} -> {after['rss_kib'] / 1024:.1f} MiB "
            f"({rss_mib:+.1f} MiB per 1000 cycles)"
        )
        assert after["fds"] <= before["fds"] + FD_SLACK, (before, after)
        assert after["threads"] <= before["threads"] + THREAD_SLACK, (before, after)
        assert rss_mib <= RSS_LIMIT_MIB, (before, after)
    finally:
        for rt in runtimes:
            rt.close()
        for ns in netns:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
