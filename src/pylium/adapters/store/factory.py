"""L3: store URLs (``local:/path/db.sqlite``, ``etcd:http://h:2379[,http://...][?prefix=/x]``).

``parse_store_url`` checks a URL and returns a :class:`StoreConfig`; ``open_store`` builds
the backend. Backends are imported on use, so reading a URL costs no etcd client import.
"""

from __future__ import annotations

import urllib.parse

from pylium.adapters.store.api import Store, StoreConfig
from pylium.base.errors import ConfigError

_KEY = "store"
_FORMS = "local:/path/to/db.sqlite or etcd:http://127.0.0.1:2379[,http://...][?prefix=/x]"


def _endpoint(raw: str, url: str) -> str:
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(_KEY, f"{url!r}: etcd endpoint {raw!r} must be http(s)://host[:port]")
    try:
        port = parts.port or 2379
    except ValueError as err:
        raise ConfigError(_KEY, f"{url!r}: etcd endpoint {raw!r}: {err}") from err
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(_KEY, f"{url!r}: etcd endpoint {raw!r} must not have a path")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def _prefix(query: str, url: str) -> str | None:
    if not query:
        return None
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"prefix"})
    if unknown:
        raise ConfigError(_KEY, f"{url!r}: unknown option {unknown[0]!r} (allowed: prefix)")
    prefix = params["prefix"][-1].strip("/")
    return f"/{prefix}/" if prefix else ""


def parse_store_url(url: str) -> StoreConfig:
    """The backend and its location named by ``url``; ConfigError says what is wrong."""
    scheme, sep, rest = url.partition(":")
    if not sep or not rest:
        raise ConfigError(_KEY, f"{url!r} is not a store URL; expected {_FORMS}")
    if scheme == "local":
        if "?" in rest:
            raise ConfigError(_KEY, f"{url!r}: options such as prefix apply to etcd only")
        return StoreConfig(backend="local", path=rest)
    if scheme == "etcd":
        endpoints, _, query = rest.partition("?")
        raw = [e.strip() for e in endpoints.split(",")]
        if not all(raw):
            raise ConfigError(_KEY, f"{url!r}: empty etcd endpoint; expected {_FORMS}")
        return StoreConfig(
            backend="etcd",
            endpoints=tuple(_endpoint(e, url) for e in raw),
            prefix=_prefix(query, url),
        )
    raise ConfigError(_KEY, f"{url!r}: unknown store backend {scheme!r}; expected {_FORMS}")


def open_store(config_or_url: StoreConfig | str) -> Store:
    """A store for a URL or config; no I/O until the first operation."""
    config = parse_store_url(config_or_url) if isinstance(config_or_url, str) else config_or_url
    if config.backend == "local":
        if not config.path:
            raise ConfigError(_KEY, "local store needs a database path")
        from pylium.adapters.store.sqlite import SqliteStore

        return SqliteStore(config.path)
    if config.backend == "etcd":
        if not config.endpoints:
            raise ConfigError(_KEY, "etcd store needs at least one endpoint")
        from pylium.adapters.store.etcd import DEFAULT_PREFIX, EtcdStore

        prefix = DEFAULT_PREFIX if config.prefix is None else config.prefix
        return EtcdStore(config.endpoints, prefix=prefix)
    raise ConfigError(_KEY, f"unknown store backend {config.backend!r} (allowed: local, etcd)")
