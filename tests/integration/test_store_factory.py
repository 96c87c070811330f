"""Store URLs: what parses, what each part becomes, and the errors for bad URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylium.adapters.store import StoreConfig, open_store, parse_store_url
from pylium.adapters.store.etcd import EtcdStore
from pylium.adapters.store.sqlite import SqliteStore
from pylium.base.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "config"),
    [
        (
            "local:/var/lib/pylium/store.sqlite",
            StoreConfig("local", "/var/lib/pylium/store.sqlite"),
        ),
        (
            "etcd:http://127.0.0.1:2379",
            StoreConfig("etcd", endpoints=("http://127.0.0.1:2379",)),
        ),
        (
            "etcd:http://10.0.0.1,https://10.0.0.2:2479?prefix=/x",
            StoreConfig(
                "etcd", endpoints=("http://10.0.0.1:2379", "https://10.0.0.2:2479"), prefix="/x/"
            ),
        ),
        (
            "etcd:http://[::1]:2379?prefix=",
            StoreConfig("etcd", endpoints=("http://[::1]:2379",), prefix=""),
        ),
    ],
)
def test_valid_urls(url: str, config: StoreConfig) -> None:
    assert parse_store_url(url) == config


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "is not a store URL"),
        ("/tmp/x.sqlite", "is not a store URL"),
        ("local:", "is not a store URL"),
        ("redis:localhost", "unknown store backend 'redis'"),
        ("etcd:127.0.0.1:2379", "must be http(s)://host[:port]"),
        ("etcd:http://a:2379,", "empty etcd endpoint"),
        ("etcd:http://a:99999", "etcd endpoint"),
        ("etcd:http://a:2379/v3", "must not have a path"),
        ("etcd:http://a:2379?prefx=/x", "unknown option 'prefx'"),
        ("local:/x.sqlite?prefix=/p", "apply to etcd only"),
    ],
)
def test_bad_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_store_url(url)
    assert info.value.key == "store"
    assert message in str(info.value)


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    local = open_store(f"local:{tmp_path / 's.sqlite'}")
    assert isinstance(local, SqliteStore)
    local.close()
    remote = open_store(StoreConfig("etcd", endpoints=("http://127.0.0.1:2379",), prefix="/p/"))
    assert isinstance(remote, EtcdStore) and remote.prefix == "/p/"
    remote.close()
