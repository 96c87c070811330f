"""L4: wake a daemon's loop as soon as anything under a store prefix changes, instead of at its
next periodic tick: a background watch sets an event per change. The periodic tick stays as a
safety net (a watch that breaks is re-established, and nothing depends on every event)."""

from __future__ import annotations

import logging
import threading

from pylium.adapters.store.api import Store, Watch
from pylium.base.errors import PyliumError

log = logging.getLogger(__name__)


class Wakeup:
    def __init__(self, store: Store, prefix: str, event: threading.Event | None = None) -> None:
        """``event``: shared with other wakeups, so that one wait covers several prefixes."""
        self.store = store
        self.prefix = prefix
        self.event = event if event is not None else threading.Event()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"wakeup:{prefix}", daemon=True)

    def start(self) -> Wakeup:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                watch = self.store.watch(self.prefix, start_revision=self.store.revision() + 1)
                self._watch = watch
                if self._stop.is_set():
                    watch.close()
                    return
                for _ in watch:
                    self.event.set()
            except PyliumError as err:
                log.warning("watch on %s broke (%s); re-establishing", self.prefix, err)
                self.event.set()  # something may have been missed
                self._stop.wait(1.0)

    def wait(self, timeout: float) -> bool:
        """Until a change or ``timeout``; True when woken by a change (then re-armed)."""
        woken = self.event.wait(timeout)
        self.event.clear()
        return woken

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.close()
        self._thread.join(timeout=5)
