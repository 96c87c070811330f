"""L4: leader election through the store: whoever holds ``key`` (bound to its lease) leads.

A candidate writes its identity to the key with compare-and-swap on "absent", attached to a
lease of ``ttl`` seconds that it keeps alive. When the leader dies its lease expires, the key
disappears, and the next candidate's attempt succeeds: hand-over takes at most ``ttl`` plus one
retry period. A leader that fails to renew in time steps down.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from pylium.adapters.store.api import Compare, Put, Store
from pylium.base.errors import StoreError

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(self, store: Store, *, key: str, identity: str, ttl: int = 5) -> None:
        self.store = store
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.lease = 0
        self.is_leader = False

    def try_acquire(self) -> bool:
        """One attempt; True when this candidate leads (now or already)."""
        if self.is_leader:
            try:
                self.store.keepalive(self.lease)
                return True
            except StoreError:
                log.warning("lost leadership: lease expired", extra={"key": self.key})
                self.is_leader = False
        lease = self.store.grant_lease(self.ttl)
        result = self.store.commit(
            [Compare(self.key, 0)], [Put(self.key, self.identity.encode(), lease)]
        )
        if result.succeeded:
            self.lease = lease
            self.is_leader = True
            log.info("became leader", extra={"key": self.key, "identity": self.identity})
            return True
        self.store.revoke(lease)
        return False

    def current_leader(self) -> str | None:
        kv = self.store.get(self.key)
        return kv.value.decode() if kv else None

    def run(self, stop: threading.Event, on_change: threading.Event | None = None) -> None:
        """Campaign and renew until ``stop`` is set; resign on the way out."""
        period = max(0.5, self.ttl / 3)
        while not stop.is_set():
            was = self.is_leader
            try:
                self.try_acquire()
            except StoreError as err:
                log.warning("leader election: %s", err)
                self.is_leader = False
            if on_change is not None and was != self.is_leader:
                on_change.set()
            stop.wait(period)
        self.resign()

    def resign(self) -> None:
        if self.is_leader:
            with contextlib.suppress(StoreError):
                self.store.revoke(self.lease)
            self.is_leader = False
