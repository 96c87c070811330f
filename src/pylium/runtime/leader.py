"""L4: leader election through the store: whoever holds ``key`` (bound to its lease) leads.

Each candidate keeps one lease of ``ttl`` seconds alive for as long as it runs. To it are
bound its presence key (``<presence_prefix><identity>``, so that the cluster can count the
replicas that are up) and, while it leads, the leader key, written with compare-and-swap on
"absent". When the leader dies its lease expires, the key disappears, and the next
candidate's attempt succeeds: hand-over takes at most ``ttl`` plus one retry period.

Two guards keep a deposed leader from writing (what would allocate a CIDR or a port twice):

* a leader counts itself leader only until ``ttl`` minus one period after its last renewal
  (a process that was frozen longer than that steps down before doing anything);
* :class:`FencedStore` adds "the leader key is still the one I wrote" to every transaction
  of the controllers, so a write that races a hand-over fails with :class:`NotLeaderError`
  instead of landing next to the new leader's.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from pylium.adapters.store.api import (
    Compare,
    Delete,
    KeyValue,
    ListResult,
    Op,
    Put,
    Store,
    TxnResult,
    Watch,
)
from pylium.base.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)


class NotLeaderError(StoreError):
    """A fenced write found that this candidate no longer holds the leader key."""


class LeaderElector:
    def __init__(
        self,
        store: Store,
        *,
        key: str,
        identity: str,
        ttl: int = 5,
        presence_prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.presence_prefix = presence_prefix
        self.clock = clock
        self.period = max(0.5, ttl / 3)
        self.lease = 0
        self.leader_revision = 0
        """mod_revision of the leader key this candidate wrote (0: not leading)."""
        self._renewed = 0.0

    @property
    def is_leader(self) -> bool:
        """Leading, and renewed recently enough that the lease cannot have expired yet."""
        return bool(self.leader_revision) and (
            self.clock() - self._renewed < self.ttl - self.period
        )

    def _step_down(self, why: str) -> None:
        if self.leader_revision:
            log.warning("lost leadership: %s", why, extra={"key": self.key})
        self.leader_revision = 0

    def _ensure_lease(self) -> None:
        """Keep our lease alive, or take a new one (with the presence key) after it expired."""
        if self.lease:
            try:
                self.store.keepalive(self.lease)
                self._renewed = self.clock()
                return
            except StoreUnavailable:
                raise  # no answer: the lease may still be alive, try again next period
            except StoreError as err:
                self._step_down(f"lease expired ({err})")
                self.lease = 0
        started = self.clock()
        lease = self.store.grant_lease(self.ttl)
        if self.presence_prefix:
            self.store.put(
                self.presence_prefix + self.identity, self.identity.encode(), lease=lease
            )
        self.lease, self._renewed = lease, started

    def try_acquire(self) -> bool:
        """One attempt; True when this candidate leads (now or already)."""
        self._ensure_lease()
        if self.leader_revision:
            kv = self.store.get(self.key)
            if kv is not None and kv.mod_revision == self.leader_revision:
                return self.is_leader
            self._step_down("the leader key changed hands")
        result = self.store.commit(
            [Compare(self.key, 0)], [Put(self.key, self.identity.encode(), self.lease)]
        )
        if result.succeeded:
            self.leader_revision = result.revision
            log.info("became leader", extra={"key": self.key, "identity": self.identity})
        return self.is_leader

    def current_leader(self) -> str | None:
        kv = self.store.get(self.key)
        return kv.value.decode() if kv else None

    def run(self, stop: threading.Event, on_change: threading.Event | None = None) -> None:
        """Campaign and renew until ``stop`` is set; resign on the way out."""
        while not stop.is_set():
            was = self.is_leader
            try:
                self.try_acquire()
            except StoreError as err:
                log.warning("leader election: %s", err)
            if on_change is not None and was != self.is_leader:
                on_change.set()
            stop.wait(self.period)
        self.resign()

    def resign(self) -> None:
        """Give up the lease (leader and presence keys go with it) so a successor need not
        wait for it to expire."""
        self.leader_revision = 0
        if self.lease:
            with contextlib.suppress(StoreError):
                self.store.revoke(self.lease)
            self.lease = 0


class FencedStore:
    """``store`` for a leader's controllers: every write also requires that the leader key
    is still the one ``elector`` wrote. Reads, watches and leases pass through."""

    def __init__(self, store: Store, elector: LeaderElector) -> None:
        self.store = store
        self.elector = elector

    def _fence(self) -> Compare:
        revision = self.elector.leader_revision
        if not revision or not self.elector.is_leader:
            raise NotLeaderError(self.elector.key, f"{self.elector.identity} is not the leader")
        return Compare(self.elector.key, revision)

    def commit(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        fence = self._fence()
        result = self.store.commit([*compares, fence], ops)
        if not result.succeeded:
            kv = self.store.get(fence.key)
            if kv is None or kv.mod_revision != fence.mod_revision:
                raise NotLeaderError(fence.key, "leadership changed hands during a write")
        return result

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        result = self.commit([], [Put(key, value, lease)])
        return result.revision

    def delete(self, key: str) -> bool:
        existed = self.store.get(key) is not None
        self.commit([], [Delete(key)])
        return existed

    def get(self, key: str) -> KeyValue | None:
        return self.store.get(key)

    def list(self, prefix: str) -> ListResult:
        return self.store.list(prefix)

    def watch(self, prefix: str, *, start_revision: int) -> Watch:
        return self.store.watch(prefix, start_revision=start_revision)

    def revision(self) -> int:
        return self.store.revision()

    def grant_lease(self, ttl: int) -> int:
        return self.store.grant_lease(ttl)

    def keepalive(self, lease: int) -> None:
        self.store.keepalive(lease)

    def revoke(self, lease: int) -> None:
        self.store.revoke(lease)

    def compact(self, revision: int) -> None:
        self.store.compact(revision)

    def close(self) -> None:
        self.store.close()
