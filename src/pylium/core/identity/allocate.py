"""L2: labels -> numeric identity, decided as data so that the caller can commit it with
compare-and-swap: the same label set always maps to the same number; a new set gets the
lowest free number of the cluster's range. If the CAS fails (another node won the race), the
caller re-reads and decides again."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from pylium.base.errors import AllocationError
from pylium.base.ids import IdentityID
from pylium.core.identity.labels import Label
from pylium.core.identity.numeric import cluster_range, local_range


def labels_key(labels: Iterable[Label]) -> str:
    """A stable key for a label set (order-insensitive): its SHA-256 over sorted labels.

    The input text must never change: stored identities are found by this key.
    """
    text = ";".join(sorted({str(lb) for lb in labels}))
    return hashlib.sha256(text.encode()).hexdigest()


def lowest_free_in(span: range, used: Collection[int], *, after: int = 0) -> int:
    """The lowest number of ``span`` not in ``used`` (and above ``after``)."""
    taken = set(used)
    for candidate in range(max(span.start, after + 1), span.stop):
        if candidate not in taken:
            return candidate
    raise AllocationError(f"{span.start}-{span.stop - 1}", "no free security identity left")


def lowest_free(used: Collection[int], cluster_id: int = 0, *, after: int = 0) -> int:
    """The lowest identity of the cluster's range not in ``used`` (and above ``after``)."""
    try:
        return lowest_free_in(cluster_range(cluster_id), used, after=after)
    except AllocationError as err:
        raise AllocationError(f"cluster {cluster_id}", err.reason) from None


def lowest_free_local(used: Collection[int]) -> int:
    """The lowest free node-local identity (CIDR, FQDN): scope ``1 << 24``."""
    return lowest_free_in(local_range(), used)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to commit for a label set: ``new`` means create ``identity`` under ``key`` with a
    CAS that requires both the key and the number to be absent; otherwise just use it."""

    identity: IdentityID
    key: str
    labels: tuple[Label, ...]
    new: bool


def decide(
    labels: Iterable[Label],
    by_key: Mapping[str, int],
    *,
    cluster_id: int = 0,
    also_used: Collection[int] = (),
) -> Decision:
    """The identity of ``labels`` given the existing allocations (``labels_key`` -> number),
    plus numbers known to be taken without a key (e.g. being garbage-collected)."""
    ordered = tuple(sorted(set(labels)))
    key = labels_key(ordered)
    if key in by_key:
        return Decision(IdentityID(by_key[key]), key, ordered, new=False)
    number = lowest_free({*by_key.values(), *also_used}, cluster_id)
    return Decision(IdentityID(number), key, ordered, new=True)
