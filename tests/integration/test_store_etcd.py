"""etcd-only behaviour: a watch survives a server restart, key prefixes isolate stores,
errors when etcd is down, and the test server cleans up after itself."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from etcd3gw.client import Etcd3Client

from pylium.adapters.store import Watch, open_store
from pylium.base.errors import StoreUnavailable
from pylium.testing.etcd import EtcdServer, etcd_server, free_port

if TYPE_CHECKING:  # fixtures' types; conftest is never imported at run time
    from conftest import EventCollector

Collect = Callable[[Watch], "EventCollector"]
pytestmark = pytest.mark.etcd


def test_watch_resumes_without_gap_or_duplicate_after_etcd_restart(
    etcd: EtcdServer, collect: Collect
) -> None:
    store = open_store(f"etcd:{etcd.url}?prefix=/restart")
    try:
        before = [store.put("k", str(i).encode()) for i in range(10)]
        watcher = collect(store.watch("", start_revision=before[0]))
        assert [e.revision for e in watcher.take(10)] == before

        old_pid = etcd.pid
        etcd.stop()
        etcd.start()
        assert etcd.pid != old_pid

        after = [store.put("k", str(i).encode()) for i in range(10, 20)]
        resumed = watcher.take(10)
        assert [e.revision for e in resumed] == after
        assert [e.value for e in resumed] == [str(i).encode() for i in range(10, 20)]
        fence = store.put("fence", b"")
        assert [(e.key, e.revision) for e in watcher.take(1)] == [("fence", fence)]
    finally:
        etcd.start()
        store.close()


def test_prefixes_isolate_stores_sharing_one_etcd(etcd: EtcdServer) -> None:
    one = open_store(f"etcd:{etcd.url}?prefix=/one")
    two = open_store(f"etcd:{etcd.url}?prefix=/two")
    try:
        one.put("k", b"1")
        two.put("k", b"2")
        assert [kv.value for kv in one.list("").items] == [b"1"]
        assert [kv.value for kv in two.list("").items] == [b"2"]
        raw = Etcd3Client(host="127.0.0.1", port=etcd.client_port, api_path="/v3/")
        assert raw.get("/one/k") == [b"1"]
        raw.session.close()
    finally:
        one.close()
        two.close()


def test_unreachable_etcd_is_store_unavailable() -> None:
    store = open_store(f"etcd:http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(StoreUnavailable, match="no etcd endpoint answered") as info:
            store.get("k")
        assert info.value.__cause__ is not None
    finally:
        store.close()


def test_second_endpoint_is_used_when_the_first_is_down(etcd: EtcdServer) -> None:
    store = open_store(f"etcd:http://127.0.0.1:{free_port()},{etcd.url}?prefix=/failover")
    try:
        rev = store.put("k", b"v")
        kv = store.get("k")
        assert kv is not None and kv.mod_revision == rev
    finally:
        store.close()


def test_etcd_server_is_killed_and_removed_on_exit(tmp_path: Path) -> None:
    with etcd_server(tmp_path) as server:
        pid, data_dir = server.pid, server.data_dir
        assert data_dir.is_dir()
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data_dir.exists()
