"""The agent's IPAM on both store backends: two allocators for one node in two processes (a
restarted agent overlapping its predecessor) never hand out the same address, and a new
allocator restores exactly what is held."""

from __future__ import annotations

import ipaddress
import multiprocessing
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store, open_store
from pylium.agent.ipam import IPAM
from pylium.model.config import IPAMMode
from pylium.model.resource import Resource


def _node(store: Store, cidrs: list[str]) -> None:
    ResourceClient(store).apply(
        [
            Resource(
                {
                    "apiVersion": "cilium.io/v2",
                    "kind": "CiliumNode",
                    "metadata": {"name": "n1"},
                    "spec": {"ipam": {"podCIDRs": cidrs}},
                }
            )
        ]
    )


def _ready_ipam(store: Store) -> IPAM:
    ipam = IPAM(store, "n1", IPAMMode.CLUSTER_POOL)
    assert ipam.sync_cidrs()
    ipam.restore()
    return ipam


def _allocate(url: str, tag: str, count: int, out: Any) -> None:
    store = open_store(url)
    ipam = _ready_ipam(store)
    out.put(
        [(str(ipam.allocate(f"default/{tag}-{i}")), f"default/{tag}-{i}") for i in range(count)]
    )
    store.close()


def test_two_processes_one_node_never_share_an_address(store_target: Any) -> None:
    store = open_store(store_target.url)
    _node(store, ["10.1.0.0/24"])
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allocate, args=(store_target.url, t, 30, queue)) for t in "ab"]
    for p in procs:
        p.start()
    got = [pair for _ in procs for pair in queue.get(timeout=120)]
    for p in procs:
        p.join(60)
    ips = [ip for ip, _ in got]
    assert len(ips) == 60 and len(set(ips)) == 60

    restored = _ready_ipam(store)
    for ip, owner in got:
        assert restored.owner_of(ipaddress.ip_address(ip)) == owner
    assert restored.usage().used == 61  # and the router
    fresh = restored.allocate("default/fresh")
    assert str(fresh) not in ips and fresh != restored.router_ip
    store.close()
