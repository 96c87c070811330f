"""The store contract, run unchanged against both backends (SQLite file and a real etcd)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from pylium.adapters.store import (
    Compare,
    Delete,
    EventType,
    Put,
    Store,
    Watch,
    compare_and_swap,
    open_store,
)
from pylium.base.errors import CompactedError, StoreError

if TYPE_CHECKING:  # fixtures' types; conftest is never imported at run time
    from conftest import EventCollector, StoreTarget

Collect = Callable[[Watch], "EventCollector"]


def test_put_get_delete_follow_etcd_revision_semantics(store: Store) -> None:
    assert store.get("a/missing") is None
    start = store.revision()

    r1 = store.put("a/k", b"one")
    assert r1 == start + 1
    r2 = store.put("a/k", b"two")
    assert r2 == r1 + 1
    kv = store.get("a/k")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (b"two", r1, r2, 2)

    assert store.delete("a/k") is True
    after_delete = store.revision()
    assert after_delete == r2 + 1
    assert store.get("a/k") is None
    assert store.delete("a/k") is False
    assert store.revision() == after_delete, "deleting nothing must not bump the revision"

    r3 = store.put("a/k", b"again")
    again = store.get("a/k")
    assert again is not None
    assert (again.create_revision, again.mod_revision, again.version) == (r3, r3, 1)


def test_list_by_prefix_is_sorted_and_exact(store: Store) -> None:
    for key in ("pods/b", "pods/a", "podsx/c", "pod", "nodes/n1"):
        store.put(key, key.encode())
    result = store.list("pods/")
    assert [kv.key for kv in result.items] == ["pods/a", "pods/b"]
    assert [kv.value for kv in result.items] == [b"pods/a", b"pods/b"]
    assert result.revision == store.revision()
    assert store.list("absent/").items == ()


def test_commit_is_all_or_nothing(store: Store) -> None:
    r_a = store.put("t/a", b"1")
    failed = store.commit(
        [Compare("t/a", r_a), Compare("t/b", r_a)], [Put("t/a", b"2"), Put("t/c", b"3")]
    )
    assert failed.succeeded is False
    assert failed.revision == r_a
    assert store.get("t/c") is None
    kv_a = store.get("t/a")
    assert kv_a is not None and kv_a.value == b"1"

    done = store.commit(
        [Compare("t/a", r_a), Compare("t/b", 0)],
        [Put("t/b", b"b"), Put("t/c", b"c"), Delete("t/a")],
    )
    assert done.succeeded is True
    assert done.revision == r_a + 1, "a transaction takes exactly one revision"
    items = store.list("t/").items
    assert [(kv.key, kv.mod_revision) for kv in items] == [
        ("t/b", done.revision),
        ("t/c", done.revision),
    ]


def test_commit_rejects_the_same_key_twice(store: Store) -> None:
    with pytest.raises(StoreError, match="t/x"):
        store.commit([], [Put("t/x", b"1"), Delete("t/x")])
    assert store.get("t/x") is None


def test_compare_and_swap(store: Store) -> None:
    assert compare_and_swap(store, "cas/k", expected_mod_revision=0, value=b"1") is True
    assert compare_and_swap(store, "cas/k", expected_mod_revision=0, value=b"x") is False
    kv = store.get("cas/k")
    assert kv is not None and kv.value == b"1"
    assert compare_and_swap(store, "cas/k", expected_mod_revision=kv.mod_revision, value=b"2")
    stale = compare_and_swap(store, "cas/k", expected_mod_revision=kv.mod_revision, value=b"3")
    assert stale is False
    final = store.get("cas/k")
    assert final is not None and final.value == b"2"


def test_watch_delivers_history_then_live_changes_in_order(store: Store, collect: Collect) -> None:
    start = store.put("w/a", b"1")
    store.put("other/z", b"not watched")
    store.put("w/b", b"2")
    store.delete("w/a")
    txn = store.commit([], [Put("w/c", b"3"), Delete("w/b"), Put("w/d", b"4")])

    watcher = collect(store.watch("w/", start_revision=start))
    history = watcher.take(6)
    assert [(e.type, e.key, e.value) for e in history] == [
        (EventType.PUT, "w/a", b"1"),
        (EventType.PUT, "w/b", b"2"),
        (EventType.DELETE, "w/a", b""),
        (EventType.PUT, "w/c", b"3"),
        (EventType.DELETE, "w/b", b""),
        (EventType.PUT, "w/d", b"4"),
    ]
    assert [e.revision for e in history[3:]] == [txn.revision] * 3

    live = [store.put(f"w/live{i}", str(i).encode()) for i in range(20)]
    events = watcher.take(20)
    assert [e.revision for e in events] == live
    assert [e.value for e in events] == [str(i).encode() for i in range(20)]

    # A fence: the next event is the fence itself, so nothing above was delivered twice.
    fence = store.put("w/fence", b"")
    assert [(e.key, e.revision) for e in watcher.take(1)] == [("w/fence", fence)]
    assert watcher.close(), "close() from another thread must end the iteration"


def test_watch_from_zero_means_from_now(store: Store, collect: Collect) -> None:
    store.put("now/old", b"old")
    watcher = collect(store.watch("now/", start_revision=0))
    rev = store.put("now/new", b"new")
    assert [(e.key, e.revision) for e in watcher.take(1)] == [("now/new", rev)]


def test_idle_watch_closes_promptly(store: Store, collect: Collect) -> None:
    watcher = collect(store.watch("idle/", start_revision=store.revision() + 1))
    assert watcher.close()


def test_watch_resumes_from_last_revision_after_reopen(
    store_target: StoreTarget, collect: Collect
) -> None:
    first_store = open_store(store_target.url)
    revs = [first_store.put("r/k", str(i).encode()) for i in range(10)]
    first = collect(first_store.watch("r/", start_revision=revs[0]))
    seen = first.take(10)
    assert first.close()
    first_store.close()

    second_store = open_store(store_target.url)
    try:
        more = [second_store.put("r/k", str(i).encode()) for i in range(10, 15)]
        second = collect(second_store.watch("r/", start_revision=seen[-1].revision + 1))
        resumed = second.take(5)
        assert [e.revision for e in seen + resumed] == revs + more
        assert [e.value for e in seen + resumed] == [str(i).encode() for i in range(15)]
    finally:
        second_store.close()


def test_compaction_is_reported_to_old_watchers(store: Store, collect: Collect) -> None:
    revs = [store.put("c/k", str(i).encode()) for i in range(5)]
    store.compact(revs[2])
    store.compact(revs[1])  # older than what is already compacted: nothing to do

    old = collect(store.watch("c/", start_revision=revs[0]))
    with pytest.raises(CompactedError) as info:
        old.take(1)
    assert (info.value.requested, info.value.compact_revision) == (revs[0], revs[2])
    assert "compacted" in str(info.value)

    fresh = collect(store.watch("c/", start_revision=revs[3]))
    assert [e.revision for e in fresh.take(2)] == revs[3:]

    with pytest.raises(StoreError, match="future"):
        store.compact(store.revision() + 100)
