"""SQLite-only behaviour: several processes open one file, errors map to StoreError."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pylium.adapters.store import open_store
from pylium.adapters.store.sqlite import SqliteStore
from pylium.base.errors import StoreError, StoreUnavailable


def test_database_is_wal_with_the_documented_tables(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db" / "store.sqlite")
    store.put("k", b"v")
    store.close()
    raw = sqlite3.connect(tmp_path / "db" / "store.sqlite")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"kv", "log", "leases", "meta"} <= tables
        assert raw.execute("SELECT revision, compact_revision FROM meta").fetchone() == (2, 0)
        assert raw.execute("SELECT revision, key, type FROM log").fetchall() == [(2, b"k", 0)]
    finally:
        raw.close()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    store = open_store(f"local:{path}")
    with pytest.raises(StoreError, match=r"junk\.sqlite") as info:
        store.get("k")
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_an_unusable_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = open_store(f"local:{blocker}/sub/store.sqlite")
    with pytest.raises(StoreUnavailable, match=r"store\.sqlite"):
        store.put("k", b"v")
