"""Leases on both backends: expiry without keep-alive (even when the holder process is gone
and only a watcher is left), keep-alive, revoke, and unknown leases."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import pytest

from pylium.adapters.store import EventType, Store, Watch, open_store
from pylium.base.errors import StoreError

if TYPE_CHECKING:  # fixtures' types; conftest is never imported at run time
    from conftest import EventCollector, StoreTarget

Collect = Callable[[Watch], "EventCollector"]


def _grant_and_put(url: str, key: str, ttl: int) -> tuple[int, int]:
    """Runs in another process: an 'agent' that takes a lease, writes a key and dies."""
    store = open_store(url)
    try:
        lease = store.grant_lease(ttl)
        return lease, store.put(key, b"alive", lease=lease)
    finally:
        store.close()


def test_keys_of_a_dead_holder_vanish_after_ttl(
    store_target: StoreTarget, store: Store, collect: Collect
) -> None:
    start = store.revision() + 1
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        lease, put_rev = pool.submit(_grant_and_put, store_target.url, "l/agent", 1).result()
    assert lease != 0

    # Only this watch is left polling the store: it alone must make the key disappear.
    watcher = collect(store.watch("l/", start_revision=start))
    put, deleted = watcher.take(2)
    assert (put.type, put.key, put.revision) == (EventType.PUT, "l/agent", put_rev)
    assert (deleted.type, deleted.key) == (EventType.DELETE, "l/agent")
    assert deleted.revision > put_rev
    assert store.get("l/agent") is None
    with pytest.raises(StoreError, match=f"lease {lease}"):
        store.keepalive(lease)


def test_keepalive_keeps_keys_and_revoke_deletes_them(store: Store, collect: Collect) -> None:
    ttl = 2
    lease = store.grant_lease(ttl)
    store.put("k/a", b"a", lease=lease)
    store.put("k/b", b"b", lease=lease)
    store.put("k/plain", b"p")
    watcher = collect(store.watch("k/", start_revision=store.revision() + 1))

    until = time.monotonic() + 2 * ttl
    while time.monotonic() < until:
        store.keepalive(lease)
        time.sleep(0.25)
    assert [kv.key for kv in store.list("k/").items] == ["k/a", "k/b", "k/plain"]
    kv = store.get("k/a")
    assert kv is not None and kv.lease == lease

    store.revoke(lease)
    events = watcher.take(2)
    assert {(e.type, e.key) for e in events} == {
        (EventType.DELETE, "k/a"),
        (EventType.DELETE, "k/b"),
    }
    assert events[0].revision == events[1].revision, "a revoke deletes in one revision"
    assert [kv.key for kv in store.list("k/").items] == ["k/plain"]
    with pytest.raises(StoreError):
        store.keepalive(lease)
    with pytest.raises(StoreError):
        store.revoke(lease)


def test_put_with_an_unknown_lease_writes_nothing(store: Store) -> None:
    with pytest.raises(StoreError, match="lease"):
        store.put("u/k", b"x", lease=987654321)
    assert store.get("u/k") is None
    with pytest.raises(StoreError):
        store.grant_lease(0)
