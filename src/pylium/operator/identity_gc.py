"""L5: the operator's identity garbage collector.

Every ``identity-gc-interval`` it lists identities that no node references; one still unused
after ``identity-heartbeat-timeout`` since it was first seen unused is deleted (together with
its label index) in a transaction that fails if a node takes a reference meanwhile.
"""

from __future__ import annotations

import logging

from pylium.adapters.identities import delete_identity, unused_identities
from pylium.adapters.store.api import Store

log = logging.getLogger(__name__)


class IdentityGC:
    def __init__(self, store: Store, *, grace_seconds: float) -> None:
        self.store = store
        self.grace = grace_seconds
        self.first_unused: dict[int, float] = {}

    def run_once(self, now: float) -> list[int]:
        """One collection pass at time ``now``; returns the identities deleted."""
        unused = {u.identity: u for u in unused_identities(self.store)}
        self.first_unused = {i: t for i, t in self.first_unused.items() if i in unused}
        removed = []
        for identity, entry in sorted(unused.items()):
            since = self.first_unused.setdefault(identity, now)
            if now - since < self.grace:
                continue
            if delete_identity(self.store, entry):
                removed.append(identity)
                del self.first_unused[identity]
                log.info("garbage-collected identity", extra={"identity": identity})
        return removed
