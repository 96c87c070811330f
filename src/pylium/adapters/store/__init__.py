"""L3: the key-value store behind one interface, with SQLite (``local``) and etcd backends.

Open one with :func:`open_store` (a URL or a :class:`StoreConfig`); the semantics are in
:mod:`pylium.adapters.store.api`, the backends in ``sqlite`` and ``etcd``.
"""

from pylium.adapters.store.api import (
    Compare,
    Delete,
    EventType,
    KeyValue,
    ListResult,
    Op,
    Put,
    Store,
    StoreConfig,
    TxnResult,
    Watch,
    WatchEvent,
    compare_and_swap,
)
from pylium.adapters.store.factory import open_store, parse_store_url

__all__ = [
    "Compare",
    "Delete",
    "EventType",
    "KeyValue",
    "ListResult",
    "Op",
    "Put",
    "Store",
    "StoreConfig",
    "TxnResult",
    "Watch",
    "WatchEvent",
    "compare_and_swap",
    "open_store",
    "parse_store_url",
]
