"""L3: the ``local`` store: one SQLite file in WAL mode, shared by several processes.

Tables: ``kv`` (current keys), ``log`` (one row per change, followed by watchers),
``leases`` and a single ``meta`` row (current and compacted revision). Every write runs in
``BEGIN IMMEDIATE`` (one writer at a time across processes; others wait ``busy_timeout``)
and gets the next revision; all operations of one ``commit`` share it, as in etcd.

Lease expiry is lazy and needs no daemon: any process that writes, reads or polls a watch
first deletes the keys of leases past ``expires_at`` (one revision per lease, logged as
DELETE events), inside a write transaction, so concurrent expirers cannot double-delete.
Readers and watchers only *try* (they do not wait for the write lock): while another process
holds the file locked, reads keep answering from the last committed state (WAL readers are
never blocked) and expiry happens once the lock is gone. Reads also have their own connection,
so a write waiting ``busy_timeout`` for the lock does not stall the process's readers.
Watchers query the log only when another connection has committed: one thread per process
and file (:class:`_ChangeBeacon`) polls ``PRAGMA data_version`` (a shared-memory read) and
wakes them, so a process with many watches costs one poll per interval, not one per watch.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pylium.adapters.store.api import (
    Compare,
    EventType,
    KeyValue,
    ListResult,
    Op,
    Put,
    TxnResult,
    WatchEvent,
)
from pylium.adapters.store.common import POLL_INTERVAL, check_ops, check_ttl, prefix_end
from pylium.base.errors import CompactedError, StoreError, StoreUnavailable

BUSY_TIMEOUT = 30.0
"""Seconds a writer waits for another process's write transaction before StoreUnavailable."""

LOCKED_RETRY = 0.5
"""Seconds a watcher waits before trying to expire leases again while the file is locked."""
LEASE_CHECK = 0.1
"""Seconds between a watcher's checks for leases past their time while any lease exists."""
_WATCH_BATCH = 1000
"""Revisions read per watch query, so a watcher far behind does not load the whole log."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    revision INTEGER NOT NULL,
    compact_revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compact_revision) VALUES (0, 1, 0);
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL,
    key BLOB NOT NULL,
    type INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_revision ON log (revision);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expires_at);
"""

_PUT, _DELETE = 0, 1
_KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"


def _kv(row: Sequence[Any]) -> KeyValue:
    return KeyValue(
        key=bytes(row[0]).decode(),
        value=bytes(row[1]),
        create_revision=row[2],
        mod_revision=row[3],
        version=row[4],
        lease=row[5],
    )


def _prefix_clause(prefix: str) -> tuple[str, tuple[bytes, ...]]:
    start = prefix.encode()
    end = prefix_end(start)
    if end is None:
        return "key >= ?", (start,)
    return "key >= ? AND key < ?", (start, end)


class _Database:
    """One connection to the file, with the error mapping and transaction shapes."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock
        self.conn: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            raise StoreUnavailable(key, f"database {self.path}: {err}") from err
        except sqlite3.Error as err:
            raise StoreError(key, f"database {self.path}: {err}") from err
        except OSError as err:
            raise StoreUnavailable(key, f"database {self.path}: {err}") from err

    def connect(self) -> sqlite3.Connection:
        if self.conn is not None:
            return self.conn
        with self.errors(str(self.path)):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                # Switching to WAL needs a moment alone with the file; when several
                # processes open a new database at once, the losers retry.
                deadline = time.monotonic() + BUSY_TIMEOUT
                while True:
                    try:
                        conn.execute("PRAGMA journal_mode=WAL")
                        break
                    except sqlite3.OperationalError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.01)
                conn.execute("PRAGMA synchronous=NORMAL")
                # Only a new file needs the schema (and the write lock for it): opening an
                # existing one must not wait for another process's transaction.
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
                    conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            except BaseException:
                conn.close()
                raise
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextlib.contextmanager
    def read(self, key: str) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot (deferred transaction); leases due are expired first."""
        conn = self.connect()
        with self.errors(key):
            self.expire_due(conn, wait=False)
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextlib.contextmanager
    def write(self, key: str) -> Iterator[_Writer]:
        """One write transaction; everything in it is applied or nothing is."""
        conn = self.connect()
        with self.errors(key):
            conn.execute("BEGIN IMMEDIATE")
            try:
                writer = _Writer(conn)
                writer.expire(self.clock())
                yield writer
                writer.seal()
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def next_expiry(self, conn: sqlite3.Connection) -> float | None:
        row = conn.execute("SELECT min(expires_at) FROM leases").fetchone()
        return None if row[0] is None else float(row[0])

    def expire_due(self, conn: sqlite3.Connection, *, wait: bool = True) -> bool:
        """Expire leases past their time; True when a write was needed. Without ``wait``,
        give up at once (False) when another connection holds the write lock."""
        due = self.next_expiry(conn)
        if due is None or due > self.clock():
            return False
        if wait:
            with self.write("lease"):
                pass
            return True
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            with self.write("lease"):
                pass
        except StoreUnavailable:
            return False
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        return True


class _Writer:
    """Applies changes inside one write transaction, handing out revisions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        row = conn.execute("SELECT revision, compact_revision FROM meta WHERE id = 0").fetchone()
        self.revision: int = row[0]
        self.compact_revision: int = row[1]
        self._pending = False

    def _rev(self) -> int:
        self._pending = True
        return self.revision + 1

    def seal(self) -> None:
        """Close the current revision: later changes in this transaction get the next one."""
        if self._pending:
            self.revision += 1
            self._pending = False
            self.conn.execute("UPDATE meta SET revision = ? WHERE id = 0", (self.revision,))

    def check_lease(self, key: str, lease: int) -> None:
        if lease and self.conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone():
            return
        if lease:
            raise StoreError(key, f"lease {lease} not found")

    def put(self, key: str, value: bytes, lease: int) -> None:
        self.check_lease(key, lease)
        rev = self._rev()
        kb = key.encode()
        self.conn.execute(
            "INSERT INTO kv (key, value, create_revision, mod_revision, version, lease)"
            " VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
            " mod_revision = excluded.mod_revision, version = version + 1, lease = excluded.lease",
            (kb, value, rev, rev, lease),
        )
        self.conn.execute(
            "INSERT INTO log (revision, key, type, value) VALUES (?, ?, ?, ?)",
            (rev, kb, _PUT, value),
        )

    def delete(self, key: str) -> bool:
        kb = key.encode()
        if self.conn.execute("DELETE FROM kv WHERE key = ?", (kb,)).rowcount == 0:
            return False
        self.conn.execute(
            "INSERT INTO log (revision, key, type, value) VALUES (?, ?, ?, x'')",
            (self._rev(), kb, _DELETE),
        )
        return True

    def revoke(self, lease: int) -> bool:
        """Delete the lease and its keys in one revision; False when the lease is unknown."""
        if self.conn.execute("DELETE FROM leases WHERE id = ?", (lease,)).rowcount == 0:
            return False
        keys = self.conn.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,))
        for (kb,) in keys.fetchall():
            self.delete(bytes(kb).decode())
        self.seal()
        return True

    def expire(self, now: float) -> None:
        due = self.conn.execute(
            "SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at, id", (now,)
        ).fetchall()
        for (lease,) in due:
            self.revoke(lease)


class SqliteStore:
    """The ``local`` backend (see the module docstring). Safe to share between threads."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        # Wall-clock time: lease deadlines are shared between processes and outlive reboots.
        self._clock = clock
        self._db = _Database(self.path, clock)
        self._lock = threading.Lock()
        self._reader = _Database(self.path, clock)
        self._read_lock = threading.Lock()

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        with self._read_lock, self._reader.read(key) as conn:
            row = conn.execute(
                f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key.encode(),)
            ).fetchone()
        return None if row is None else _kv(row)

    def list(self, prefix: str) -> ListResult:
        where, args = _prefix_clause(prefix)
        with self._read_lock, self._reader.read(prefix) as conn:
            rev = conn.execute("SELECT revision FROM meta WHERE id = 0").fetchone()[0]
            rows = conn.execute(
                f"SELECT {_KV_COLUMNS} FROM kv WHERE {where} ORDER BY key", args
            ).fetchall()
        return ListResult(items=tuple(_kv(r) for r in rows), revision=rev)

    def revision(self) -> int:
        with self._read_lock, self._reader.read("revision") as conn:
            rev: int = conn.execute("SELECT revision FROM meta WHERE id = 0").fetchone()[0]
        return rev

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        with self._lock, self._db.write(key) as w:
            w.put(key, value, lease)
            w.seal()
            return w.revision

    def delete(self, key: str) -> bool:
        with self._lock, self._db.write(key) as w:
            return w.delete(key)

    def commit(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_ops(ops)
        where = ops[0].key if ops else (compares[0].key if compares else "txn")
        with self._lock, self._db.write(where) as w:
            for cmp in compares:
                row = w.conn.execute(
                    "SELECT mod_revision FROM kv WHERE key = ?", (cmp.key.encode(),)
                ).fetchone()
                if (row[0] if row else 0) != cmp.mod_revision:
                    return TxnResult(succeeded=False, revision=w.revision)
            for op in ops:
                if isinstance(op, Put):
                    w.put(op.key, op.value, op.lease)
                else:
                    w.delete(op.key)
            w.seal()
            return TxnResult(succeeded=True, revision=w.revision)

    # -- leases -----------------------------------------------------------------------------

    def grant_lease(self, ttl: int) -> int:
        check_ttl(ttl)
        with self._lock, self._db.write("lease") as w:
            cur = w.conn.execute(
                "INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl, self._clock() + ttl)
            )
            lease = cur.lastrowid
        assert lease is not None
        return lease

    def keepalive(self, lease: int) -> None:
        with self._lock, self._db.write(f"lease {lease}") as w:
            cur = w.conn.execute(
                "UPDATE leases SET expires_at = ? + ttl WHERE id = ?", (self._clock(), lease)
            )
            found = cur.rowcount == 1
        if not found:
            raise StoreError(f"lease {lease}", "lease not found (expired or revoked)")

    def revoke(self, lease: int) -> None:
        with self._lock, self._db.write(f"lease {lease}") as w:
            found = w.revoke(lease)
        if not found:
            raise StoreError(f"lease {lease}", "lease not found (expired or revoked)")

    # -- history ----------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        with self._lock, self._db.write("compact") as w:
            if revision > w.revision:
                raise StoreError(
                    "compact", f"revision {revision} is in the future (current {w.revision})"
                )
            if revision <= w.compact_revision:
                return
            w.conn.execute("DELETE FROM log WHERE revision < ?", (revision,))
            w.conn.execute("UPDATE meta SET compact_revision = ? WHERE id = 0", (revision,))

    def watch(self, prefix: str, *, start_revision: int) -> SqliteWatch:
        if start_revision <= 0:
            start_revision = self.revision() + 1
        return SqliteWatch(self.path, prefix, start_revision, self._clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._read_lock:
            self._reader.close()


class _ChangeBeacon:
    """Wakes a process's watchers of one file when another connection has committed.

    One daemon thread per process and file polls ``PRAGMA data_version`` every
    ``POLL_INTERVAL`` while any watcher is subscribed, and sets every subscriber's event when
    it changes (or when the poll fails: the watchers then meet the error themselves).
    """

    _beacons: ClassVar[dict[Path, _ChangeBeacon]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self._db = _Database(path, clock)
        self._subscribers: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._active = threading.Condition(self._lock)
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-beacon-{path.name}", daemon=True
        )
        self._thread.start()

    @classmethod
    def subscribe(cls, path: Path, clock: Callable[[], float], event: threading.Event) -> None:
        with cls._registry_lock:
            beacon = cls._beacons.get(path)
            if beacon is None:
                beacon = cls._beacons[path] = cls(path, clock)
        with beacon._lock:
            beacon._subscribers.add(event)
            beacon._active.notify()

    @classmethod
    def unsubscribe(cls, path: Path, event: threading.Event) -> None:
        with cls._registry_lock:
            beacon = cls._beacons.get(path)
        if beacon is not None:
            with beacon._lock:
                beacon._subscribers.discard(event)

    def _run(self) -> None:
        seen: int | None = None
        while True:
            with self._lock:
                while not self._subscribers:
                    seen = None  # a new subscriber reads the log first anyway
                    self._active.wait()
            try:
                version = self._db.connect().execute("PRAGMA data_version").fetchone()[0]
            except (sqlite3.Error, OSError):
                self._db.close()
                version = None
            if version is None or version != seen:
                with self._lock:
                    for event in self._subscribers:
                        event.set()
                seen = version
            time.sleep(POLL_INTERVAL)


class SqliteWatch:
    """Follows the log from ``start_revision`` on its own connection, in the caller's thread."""

    def __init__(
        self, path: Path, prefix: str, start_revision: int, clock: Callable[[], float]
    ) -> None:
        self._db = _Database(path, clock)
        self._prefix = prefix
        self._next = start_revision
        self._closed = threading.Event()
        self._changed = threading.Event()

    def close(self) -> None:
        """End the iteration within one poll interval; safe from any thread."""
        self._closed.set()
        self._changed.set()

    def __iter__(self) -> Iterator[WatchEvent]:
        self._changed.set()  # read once at start, whatever the beacon says
        _ChangeBeacon.subscribe(self._db.path, self._db.clock, self._changed)
        try:
            yield from self._follow()
        finally:
            _ChangeBeacon.unsubscribe(self._db.path, self._changed)
            self._db.close()

    def _follow(self) -> Iterator[WatchEvent]:
        conn = self._db.connect()
        next_expiry: float | None = None
        while not self._closed.is_set():
            with self._db.errors(self._prefix):
                expired = next_expiry is not None and next_expiry <= self._db.clock()
                # This watcher may be the only live process: it collects dead leases (unless
                # another process holds the file locked; then it tries again later).
                if expired and not self._db.expire_due(conn, wait=False):
                    expired = False
                    next_expiry = self._db.clock() + LOCKED_RETRY
                if not self._changed.is_set() and not expired:
                    # Woken by a commit elsewhere; leases are checked at least every
                    # LEASE_CHECK (the clock may be a test's, not the wall).
                    self._changed.wait(None if next_expiry is None else LEASE_CHECK)
                    continue
                self._changed.clear()  # a commit from here on wakes the next round
                next_expiry = self._db.next_expiry(conn)
                while not self._closed.is_set():
                    events, current = self._read_batch(conn)
                    yield from events
                    if self._next > current:
                        break

    def _read_batch(self, conn: sqlite3.Connection) -> tuple[list[WatchEvent], int]:
        """Events of up to ``_WATCH_BATCH`` revisions from ``self._next``, from one snapshot."""
        where, args = _prefix_clause(self._prefix)
        conn.execute("BEGIN")
        try:
            current, compacted = conn.execute(
                "SELECT revision, compact_revision FROM meta WHERE id = 0"
            ).fetchone()
            if self._next < compacted:
                raise CompactedError(self._prefix, self._next, compacted)
            last = min(current, self._next + _WATCH_BATCH - 1)
            rows = conn.execute(
                f"SELECT revision, key, type, value FROM log WHERE revision BETWEEN ? AND ?"
                f" AND {where} ORDER BY id",
                (self._next, last, *args),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        self._next = max(self._next, last + 1)
        events = [
            WatchEvent(
                type=EventType.PUT if kind == _PUT else EventType.DELETE,
                key=bytes(kb).decode(),
                value=bytes(value),
                revision=rev,
            )
            for rev, kb, kind, value in rows
        ]
        return events, current
