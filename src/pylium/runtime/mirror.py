"""L4: a watch-driven copy of the documents under one store prefix, for engines that must
react to each change without listing everything again (the agent's services engine).

The first :meth:`Mirror.take` lists the prefix (in the caller's thread: the caller sees the
whole set at once) and starts a background watch from the listing's revision + 1; every later
``take`` hands over only what the watch delivered since (key -> document, or None when it was
deleted). When the watch breaks (the store went away, history was compacted past the point
it needed), the gap cannot be trusted: the watch ends, the shared event is set, and the next
``take`` lists again; the caller diffs that full listing against what it holds.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from pylium.adapters.resources import ResourceClient, ResourceWatch
from pylium.adapters.store.api import EventType
from pylium.base.errors import PyliumError
from pylium.model.resource import Resource

log = logging.getLogger(__name__)


@dataclass
class Changes:
    """What a :meth:`Mirror.take` hands over."""

    full: dict[str, Resource] | None = None
    """Every document by store key (a listing: at the first take and after a watch gap);
    ``changed`` then holds what the watch delivered after it, still to apply on top."""
    changed: dict[str, Resource | None] = field(default_factory=dict)
    """Documents written (or deleted: None) since the last take, by store key, latest only."""
    revision: int = 0
    """The store revision everything handed over so far reflects at least."""


class Mirror:
    """Documents of one kind (optionally one name) kept by a list, then a watch."""

    def __init__(
        self,
        client: ResourceClient,
        kind: str,
        event: threading.Event,
        *,
        name: str | None = None,
    ) -> None:
        """``event`` is set on every change (shared by an engine's mirrors, so one wait
        covers them); ``name``: only the cluster-scoped object of that name."""
        self.client = client
        self.kind = kind
        self.name = name
        self.event = event
        self._lock = threading.Lock()
        self._pending: dict[str, Resource | None] = {}
        self._revision = 0
        self._listed = False
        self._watch: ResourceWatch | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def prefix(self) -> str:
        prefix = self.client.prefix_of(self.kind)
        return prefix + self.name if self.name is not None else prefix

    def _wanted(self, key: str) -> bool:
        return self.name is None or key == self.prefix

    def take(self) -> Changes:
        """What changed since the last take (a full listing first, and after a gap)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            listed = self._listed
            revision = self._revision
        if listed:
            return Changes(changed=pending, revision=revision)
        self._end_watch()
        if self.name is not None:
            revision = self.client.store.revision()  # before the read: the watch covers after
            one = self.client.get(self.kind, self.name)
            full = {self.prefix: one} if one is not None else {}
        else:
            full, revision = self.client.list_keyed(self.kind)
        with self._lock:
            if self._stopped:
                return Changes(full=full, revision=revision)
            self._pending = {}
            self._revision = revision
            self._listed = True
            watch = ResourceWatch(
                self.client, self.client.store.watch(self.prefix, start_revision=revision + 1)
            )
            self._watch = watch
            self._thread = threading.Thread(
                target=self._follow, args=(watch,), name=f"mirror:{self.prefix}", daemon=True
            )
            self._thread.start()
        return Changes(full=full, revision=revision)

    def relist(self) -> None:
        """List again at the next take (an explicit resync)."""
        with self._lock:
            self._listed = False
        self.event.set()

    def _follow(self, watch: ResourceWatch) -> None:
        why = "it ended"
        try:
            for ev in watch:
                key = self.client.key_of(ev.key)
                if not self._wanted(key):
                    continue
                with self._lock:
                    if self._watch is not watch:
                        return
                    self._pending[key] = ev.resource if ev.type is EventType.PUT else None
                    self._revision = max(self._revision, ev.revision)
                self.event.set()
        except PyliumError as err:
            why = str(err)
        with self._lock:
            if self._watch is not watch or self._stopped:
                return  # closed on purpose
            self._listed = False
        log.warning("watch on %s broke (%s); listing again", self.prefix, why)
        self.event.set()

    def _end_watch(self) -> None:
        with self._lock:
            watch, self._watch = self._watch, None
            thread, self._thread = self._thread, None
        if watch is not None:
            watch.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._end_watch()
