"""The local store while another process holds the SQLite file locked (an exclusive
transaction, as in the store-outage fault test): reads and watches keep answering from the
last committed state instead of waiting for the lock to expire leases, and lease expiry
happens once the lock is gone."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from pylium.adapters.store.sqlite import SqliteStore


def test_reads_answer_while_the_file_is_locked_and_expiry_waits_for_the_lock(
    tmp_path: Path,
) -> None:
    now = [1000.0]
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path, clock=lambda: now[0])
    lease = store.grant_lease(5)
    store.put("nodes/heartbeat/n1", b"x", lease=lease)
    store.put("plain", b"1")
    now[0] += 10  # the lease is due: the next read would expire it
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    answered = threading.Event()

    def read() -> None:
        assert store.get("plain") is not None
        assert len(store.list("").items) == 2  # nothing expired: the lock is held
        answered.set()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=20)  # a blocked read would wait the 30 s busy timeout
    assert answered.is_set()
    locker.execute("COMMIT")
    locker.close()
    assert store.get("nodes/heartbeat/n1") is None  # expired once the lock is gone
    assert store.get("plain") is not None
    store.close()
