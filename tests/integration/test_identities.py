"""Identities in the store on both backends: one number per label set cluster-wide, under
concurrency across processes; references per node; garbage collection never removes an
identity that a node references."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from pylium.adapters.identities import IdentityAllocator, unused_identities
from pylium.adapters.store import Store, open_store
from pylium.core.identity.labels import Label
from pylium.operator.identity_gc import IdentityGC

WEB = [Label("k8s", "app", "web"), Label("k8s", "io.kubernetes.pod.namespace", "default")]


def _allocate_many(url: str, node: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = open_store(url)
    alloc = IdentityAllocator(store, node)
    ids = [alloc.allocate([Label("k8s", "app", f"svc{i % 5}")]) for i in range(10)]
    out.put((node, ids))
    store.close()


def test_same_labels_same_identity_across_processes(store_target: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_allocate_many, args=(store_target.url, f"n{i}", queue))
        for i in range(3)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    mapping: dict[int, int] = {}
    for ids in results.values():
        for i, identity in enumerate(ids):
            assert mapping.setdefault(i % 5, identity) == identity
    assert len(set(mapping.values())) == 5
    assert all(256 <= v < 65536 for v in mapping.values())


def test_references_and_garbage_collection(store: Store) -> None:
    n1, n2 = IdentityAllocator(store, "n1"), IdentityAllocator(store, "n2")
    web = n1.allocate(WEB)
    assert n2.allocate(list(reversed(WEB))) == web
    assert n1.allocate([Label("reserved", "host")]) == 1
    gc = IdentityGC(store, grace_seconds=10)
    now = time.time()
    assert gc.run_once(now) == []
    assert n1.release(web) == 0
    assert gc.run_once(now + 100) == []  # n2 still uses it
    assert n2.release(web) == 0
    assert [u.identity for u in unused_identities(store)] == [web]
    assert gc.run_once(now + 200) == []  # first seen unused now: the grace period starts
    # A node takes it again during the grace period: it survives and keeps its number.
    assert n1.allocate(WEB) == web
    assert gc.run_once(now + 500) == []
    assert n1.release(web) == 0
    assert gc.run_once(now + 600) == []
    assert gc.run_once(now + 611) == [web]
    fresh = n2.allocate(WEB)
    assert fresh == web  # lowest free again, a new identity with the same number
    assert unused_identities(store) == []
