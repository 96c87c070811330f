"""Many writers in separate processes on one store: compare-and-swap never loses an update."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from pylium.adapters.store import Compare, Put, Store, Watch, open_store

if TYPE_CHECKING:  # fixtures' types; conftest is never imported at run time
    from conftest import EventCollector, StoreTarget

Collect = Callable[[Watch], "EventCollector"]
PROCESSES = 4
INCREMENTS = 50


def _increment(url: str, key: str, count: int) -> list[int]:
    """Runs in a worker process: ``count`` CAS increments; returns each success's revision."""
    store = open_store(url)
    revisions: list[int] = []
    try:
        while len(revisions) < count:
            kv = store.get(key)
            assert kv is not None
            new = str(int(kv.value) + 1).encode()
            result = store.commit([Compare(key, kv.mod_revision)], [Put(key, new)])
            if result.succeeded:
                revisions.append(result.revision)
    finally:
        store.close()
    return revisions


def test_concurrent_cas_increments_across_processes(
    store_target: StoreTarget, store: Store, collect: Collect
) -> None:
    first = store.put("counter", b"0")
    watcher = collect(store.watch("counter", start_revision=first + 1))
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(_increment, store_target.url, "counter", INCREMENTS)
            for _ in range(PROCESSES)
        ]
        revisions = [rev for f in futures for rev in f.result()]

    total = PROCESSES * INCREMENTS
    final = store.get("counter")
    assert final is not None
    assert final.value == str(total).encode()
    assert final.version == total + 1
    assert len(set(revisions)) == total, "every increment has its own revision"

    events = watcher.take(total)
    assert [e.value for e in events] == [str(i).encode() for i in range(1, total + 1)]
    assert sorted(revisions) == [e.revision for e in events]
