"""The watch-driven document mirror on a real store (SQLite and etcd): a full listing first,
then only what the watch delivered (writes and deletions, latest version per key); a watch
that breaks makes the next take list everything again, with nothing lost in between."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store, Watch, WatchEvent
from pylium.base.errors import StoreError
from pylium.model.resource import Resource
from pylium.runtime.mirror import Changes, Mirror


def service(name: str, port: int = 80) -> Resource:
    return Resource(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": port}]},
        }
    )


class BreakableStore:
    """The real store; while ``broken`` is set its watches fail at their next event, as a
    watch whose history was compacted away or whose server went does."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.broken = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def watch(self, prefix: str, *, start_revision: int) -> Watch:
        inner = self._store.watch(prefix, start_revision=start_revision)
        broken = self.broken

        class Breaking:
            def __iter__(self) -> Iterator[WatchEvent]:
                for ev in inner:
                    if broken.is_set():
                        raise StoreError(prefix, "watch broke")
                    yield ev

            def close(self) -> None:
                inner.close()

        return Breaking()


def take_until(mirror: Mirror, event: threading.Event, want: Any) -> Changes:
    """Takes (woken by the mirror's event), gathering what they hand over, until
    ``want(gathered)``."""
    gathered = Changes()
    for _ in range(200):
        changes = mirror.take()
        if changes.full is not None:
            gathered = changes
        else:
            gathered.changed.update(changes.changed)
            gathered.revision = changes.revision
        if want(gathered):
            return gathered
        event.wait(0.1)
        event.clear()
    raise AssertionError("the mirror never delivered the change")


def test_list_then_changes_then_a_full_list_after_a_broken_watch(store: Store) -> None:
    breakable = BreakableStore(store)
    client = ResourceClient(breakable)
    client.apply([service("a"), service("b")])
    event = threading.Event()
    mirror = Mirror(client, "Service", event)
    first = mirror.take()
    assert first.full is not None
    assert sorted(r.name for r in first.full.values()) == ["a", "b"]

    client.apply([service("c")])
    client.apply([service("c", 81)])  # two writes: the latest one is handed over
    client.delete("Service", "a", "default")
    changes = take_until(mirror, event, lambda c: len(c.changed) == 2)
    assert changes.full is None
    by_name = {key.rsplit("/", 1)[1]: r for key, r in changes.changed.items()}
    assert by_name["a"] is None
    assert by_name["c"] is not None and by_name["c"].body["spec"]["ports"] == [{"port": 81}]
    assert changes.revision == store.revision()

    breakable.broken.set()
    client.apply([service("d")])  # the watch breaks on it: not delivered as a change
    relisted = take_until(mirror, event, lambda c: c.full is not None)
    breakable.broken.clear()
    assert relisted.full is not None
    assert sorted(r.name for r in relisted.full.values()) == ["b", "c", "d"]

    client.apply([service("e")])  # followed again after the new listing
    again = take_until(mirror, event, lambda c: c.changed)
    assert [key.rsplit("/", 1)[1] for key in again.changed] == ["e"]
    mirror.stop()
