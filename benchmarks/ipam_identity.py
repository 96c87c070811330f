"""IP and identity allocations per second per store backend, with a same-run baseline.

Per backend (``local`` SQLite file, ``etcd`` started on loopback), in one process:

- ``ip_alloc``: pod IPs from a node's /16 through the agent's IPAM (each allocation is a CAS
  create of its store key plus the CiliumNode status update, as in the agent);
- ``identity_new``: identities for distinct label sets (index + CiliumIdentity + reference in
  one transaction);
- ``identity_ref``: references to an existing identity (what a second pod with the same labels
  costs);
- ``store_put``: plain unconditional puts, the baseline every figure is divided by.

Rounds are interleaved (A B A B ...) and the median is reported. Writes
``benchmarks/results/ipam_identity.json``.
Run: ``.venv/bin/python benchmarks/ipam_identity.py [--n N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from pylium.adapters.identities import IdentityAllocator
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store, open_store
from pylium.agent.ipam import IPAM
from pylium.core.identity.labels import Label
from pylium.model.config import IPAMMode
from pylium.model.resource import Resource
from pylium.testing.etcd import etcd_server

RESULTS = Path(__file__).resolve().parent / "results" / "ipam_identity.json"


def timed(n: int, fn: Callable[[int], object]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def store_put(store: Store, n: int) -> float:
    tag = uuid.uuid4().hex[:8]
    return timed(n, lambda i: store.put(f"bench/{tag}/{i % 50}", b"x" * 64))


def ip_alloc(store: Store, n: int) -> float:
    node = f"bench-{uuid.uuid4().hex[:8]}"
    ResourceClient(store).apply(
        [
            Resource(
                {
                    "apiVersion": "cilium.io/v2",
                    "kind": "CiliumNode",
                    "metadata": {"name": node},
                    "spec": {"ipam": {"podCIDRs": ["10.128.0.0/16"]}},
                }
            )
        ]
    )
    ipam = IPAM(store, node, IPAMMode.CLUSTER_POOL)
    ipam.sync_cidrs()
    ipam.restore()
    return timed(n, lambda i: ipam.allocate(f"default/pod-{i}"))


def identity_new(store: Store, n: int) -> float:
    alloc = IdentityAllocator(store, "bench")
    tag = uuid.uuid4().hex[:8]
    return timed(n, lambda i: alloc.allocate([Label("k8s", "app", f"{tag}-{i}")]))


def identity_ref(store: Store, n: int) -> float:
    alloc = IdentityAllocator(store, "bench")
    labels = [Label("k8s", "app", f"shared-{uuid.uuid4().hex[:8]}")]
    alloc.allocate(labels)
    return timed(n, lambda i: alloc.allocate(labels))


def run(store: Store, n: int, rounds: int) -> dict[str, float]:
    benches = {
        "store_put": store_put,
        "ip_alloc": ip_alloc,
        "identity_new": identity_new,
        "identity_ref": identity_ref,
    }
    samples: dict[str, list[float]] = {k: [] for k in benches}
    for _ in range(rounds):
        for name, bench in benches.items():
            samples[name].append(bench(store, n))
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"local:{tmp}/bench.sqlite")
        results["local"] = run(store, args.n, args.rounds)
        store.close()
        with etcd_server(Path(tmp)) as server:
            store = open_store(f"etcd:{server.url}")
            results["etcd"] = run(store, args.n, args.rounds)
            store.close()
    print(f"{'backend':<8} {'measure':<14} {'per second':>12} {'ratio to store_put':>20}")
    for backend, figures in results.items():
        for name, value in figures.items():
            ratio = value / figures["store_put"]
            print(f"{backend:<8} {name:<14} {value:>12.1f} {ratio:>20.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"n": args.n, "rounds": args.rounds, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
