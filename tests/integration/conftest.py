"""Store fixtures: every store test runs against a fresh SQLite file and a real etcd.

One etcd server is shared by the session (it starts in about a second); each test gets its
own key prefix in it, so tests cannot see each other's keys.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pylium.adapters.store import Store, Watch, WatchEvent, open_store
from pylium.testing.etcd import EtcdServer, etcd_server


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where a test's store lives: the URL (for other processes) and the etcd server if any."""

    backend: str
    url: str
    server: EtcdServer | None = None


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture(params=["local", pytest.param("etcd", marks=pytest.mark.etcd)])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if request.param == "local":
        return StoreTarget("local", f"local:{tmp_path / 'store.sqlite'}")
    server: EtcdServer = request.getfixturevalue("etcd")
    server.start()  # a restart test may have left it stopped after a failure
    return StoreTarget("etcd", f"etcd:{server.url}?prefix=/t-{uuid.uuid4().hex[:12]}", server)


@pytest.fixture
def store(store_target: StoreTarget) -> Iterator[Store]:
    opened = open_store(store_target.url)
    try:
        yield opened
    finally:
        opened.close()


class EventCollector:
    """Iterates a watch in a thread; ``take(n)`` waits (with a generous deadline) for n events."""

    DEADLINE = 30.0

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self._queue: queue.Queue[WatchEvent | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self.watch:
                self._queue.put(event)
        except BaseException as err:  # handed to the test thread by take()
            self._queue.put(err)

    def take(self, count: int) -> list[WatchEvent]:
        out: list[WatchEvent] = []
        deadline = time.monotonic() + self.DEADLINE
        while len(out) < count:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"watch delivered {len(out)} of {count} events: {out}")
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def close(self) -> bool:
        """Close the watch; True when the iterating thread has ended."""
        self.watch.close()
        self._thread.join(self.DEADLINE)
        return not self._thread.is_alive()


@pytest.fixture
def collect() -> Iterator[Callable[[Watch], EventCollector]]:
    started: list[EventCollector] = []

    def start(watch: Watch) -> EventCollector:
        started.append(EventCollector(watch))
        return started[-1]

    yield start
    for collector in started:
        collector.close()
