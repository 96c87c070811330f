"""L2: labels -> numeric identity, decided as data so that the caller can commit it with
compare-and-swap: the same label set always maps to the same number; a new set gets the
lowest free number of the cluster's range."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable

from pylium.base.errors import AllocationError
from pylium.core.identity.labels import Label
from pylium.core.identity.numeric import cluster_range


def labels_key(labels: Iterable[Label]) -> str:
    """A stable key for a label set (order-insensitive): its SHA-256 over sorted labels."""
    text = ";".join(sorted({str(lb) for lb in labels}))
    return hashlib.sha256(text.encode()).hexdigest()


def lowest_free(used: Collection[int], cluster_id: int = 0, *, after: int = 0) -> int:
    """The lowest identity of the cluster's range not in ``used`` (and above ``after``)."""
    taken = set(used)
    for candidate in cluster_range(cluster_id):
        if candidate > after and candidate not in taken:
            return candidate
    raise AllocationError(f"cluster {cluster_id}", "no free security identity left")
