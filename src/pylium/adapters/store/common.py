"""L3: small rules both store backends share (prefix ranges, transaction checks, defaults)."""

from __future__ import annotations

from collections.abc import Sequence

from pylium.adapters.store.api import Delete, Op, Put
from pylium.base.errors import StoreError

POLL_INTERVAL = 0.01
"""Seconds a SQLite watcher sleeps when nothing changed (a cheap ``data_version`` check)."""

RECONNECT_TIMEOUT = 60.0
"""Seconds an etcd watch keeps retrying after losing its server before StoreUnavailable."""


def prefix_end(prefix: bytes) -> bytes | None:
    """The first key after every key starting with ``prefix`` (etcd's ``range_end``).

    None means "no upper bound" (empty prefix, or a prefix of only 0xff bytes).
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return None


def check_ops(ops: Sequence[Op]) -> None:
    """Reject what etcd rejects: one transaction touching the same key twice."""
    seen: set[str] = set()
    for op in ops:
        if not isinstance(op, Put | Delete):
            raise StoreError(repr(op), "transaction operation must be Put or Delete")
        if op.key in seen:
            raise StoreError(op.key, "duplicate key given in one transaction")
        seen.add(op.key)


def check_ttl(ttl: int) -> None:
    if ttl <= 0:
        raise StoreError("lease", f"ttl must be a positive number of seconds, got {ttl}")
