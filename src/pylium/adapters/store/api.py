"""L3: the store interface every backend implements (``local`` SQLite and ``etcd``).

Semantics follow etcd v3, so that the two backends are interchangeable:

- every write bumps one cluster-wide revision; a key remembers the revision that created it
  (``create_revision``), last modified it (``mod_revision``) and how often it was written
  (``version``);
- ``commit`` applies a transaction atomically: all compares hold and every operation is
  applied, or nothing is written;
- ``watch(prefix, start_revision=r)`` delivers every change with revision >= r in order,
  across reconnects, and raises :class:`~pylium.base.errors.CompactedError` when r is older
  than the oldest revision kept;
- a lease expires ``ttl`` seconds after its last keep-alive, deleting its keys (each deletion
  is a watch event like any other).

Keys are ``str`` (slash-separated paths); values are ``bytes``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0
    """Lease id the key is attached to; 0 for none."""


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes
    """The new value for PUT; empty for DELETE."""
    revision: int
    """The revision of the change (the key's mod_revision for PUT, the deletion's for DELETE)."""


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction guard on one key's ``mod_revision``; 0 means "the key does not exist"."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    """The store's revision after the transaction (unchanged when it failed)."""


@dataclass(frozen=True, slots=True)
class ListResult:
    items: tuple[KeyValue, ...]
    revision: int
    """The store revision the listing was read at: watch from ``revision + 1`` to follow it."""


class Watch(Protocol):
    """A running watch: iterate for events (blocking); ``close`` ends the iteration."""

    def __iter__(self) -> Iterator[WatchEvent]: ...

    def close(self) -> None: ...


class Store(Protocol):
    """The operations every backend provides (see the module docstring for semantics)."""

    def get(self, key: str) -> KeyValue | None: ...

    def list(self, prefix: str) -> ListResult: ...

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write unconditionally; returns the new revision."""
        ...

    def delete(self, key: str) -> bool:
        """Delete unconditionally; False when the key did not exist."""
        ...

    def commit(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult: ...

    def watch(self, prefix: str, *, start_revision: int) -> Watch: ...

    def revision(self) -> int: ...

    def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; returns its id (never 0)."""
        ...

    def keepalive(self, lease: int) -> None:
        """Extend a lease by its ttl; raises StoreError when it has expired or is unknown."""
        ...

    def revoke(self, lease: int) -> None:
        """End a lease now, deleting its keys."""
        ...

    def compact(self, revision: int) -> None:
        """Forget history older than ``revision`` (watches before it get CompactedError)."""
        ...

    def close(self) -> None: ...


def compare_and_swap(
    store: Store, key: str, *, expected_mod_revision: int, value: bytes, lease: int = 0
) -> bool:
    """Write ``value`` only if ``key`` is still at ``expected_mod_revision`` (0: absent)."""
    return store.commit([Compare(key, expected_mod_revision)], [Put(key, value, lease)]).succeeded


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Which backend and where: ``local`` takes a database path, ``etcd`` endpoints."""

    backend: str = "local"
    path: str = ""
    endpoints: tuple[str, ...] = field(default_factory=tuple)
    prefix: str | None = None
    """etcd only: root prefix of every key (None: the backend's default, ``pylium/``)."""
