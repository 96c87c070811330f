"""L3: cluster-wide security identities in the store (Cilium's CRD mode).

Each identity is a ``CiliumIdentity`` named by its number with ``security-labels``; an index
key ``identities/by-labels/<sha256>`` makes a label set map to one number cluster-wide (both
are created in one compare-and-swap transaction, so two nodes racing for the same labels, or
for the same number, end with one identity). Each node that uses an identity holds a reference
key ``identities/refs/<id>/<node>`` (value: how many of its endpoints use it), written only
while the identity still exists; the operator deletes an identity only when no node holds a
reference, in a transaction that fails if one appears meanwhile.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Compare, Delete, Op, Put, Store
from pylium.base.errors import AllocationError
from pylium.core.identity.allocate import labels_key, lowest_free
from pylium.core.identity.labels import Label
from pylium.core.identity.numeric import ReservedIdentity
from pylium.model.resource import ResourceKey

INDEX_PREFIX = "identities/by-labels/"
REFS_PREFIX = "identities/refs/"
_RETRIES = 50


def reserved_for(labels: Sequence[Label]) -> int | None:
    """The reserved identity a label set names (``reserved:host`` -> 1), if any."""
    reserved = [lb for lb in labels if lb.source == "reserved"]
    if not reserved:
        return None
    names = {lb.key for lb in reserved}
    if names == {"kube-apiserver", "remote-node"}:
        return int(ReservedIdentity.KUBE_APISERVER)
    for member in ReservedIdentity:
        if member.label == f"reserved:{reserved[0].key}":
            return int(member)
    raise AllocationError(str(reserved[0]), "unknown reserved label")


class IdentityAllocator:
    def __init__(self, store: Store, node: str, *, cluster_id: int = 0) -> None:
        self.store = store
        self.client = ResourceClient(store)
        self.node = node
        self.cluster_id = cluster_id
        self._lock = threading.Lock()

    def _identity_key(self, identity: int) -> str:
        return self.client.key_of(ResourceKey("CiliumIdentity", "", str(identity)))

    def _ref_key(self, identity: int) -> str:
        return f"{REFS_PREFIX}{identity}/{self.node}"

    def allocate(self, labels: Iterable[Label]) -> int:
        """The identity of ``labels`` (created when new), with one more reference from this
        node."""
        labels = sorted(set(labels))
        reserved = reserved_for(labels)
        if reserved is not None:
            return reserved
        index = INDEX_PREFIX + labels_key(labels)
        with self._lock:
            for _ in range(_RETRIES):
                found = self.store.get(index)
                if found is not None:
                    identity = int(found.value)
                    current = self.store.get(self._identity_key(identity))
                    if current is None:  # being collected: wait for the index to go too
                        continue
                    ref = self.store.get(self._ref_key(identity))
                    count = int(ref.value) if ref else 0
                    # Rewriting the index key tells a concurrent garbage collector (which
                    # compares it) that the identity has just gained a user.
                    ok = self.store.commit(
                        [
                            Compare(index, found.mod_revision),
                            Compare(self._identity_key(identity), current.mod_revision),
                            Compare(self._ref_key(identity), ref.mod_revision if ref else 0),
                        ],
                        [
                            Put(self._ref_key(identity), str(count + 1).encode()),
                            Put(index, found.value),
                        ],
                    ).succeeded
                    if ok:
                        return identity
                    continue
                used = [int(r.name) for r in self.client.list("CiliumIdentity")[0]]
                identity = lowest_free(used, self.cluster_id)
                body = {
                    "apiVersion": "cilium.io/v2",
                    "kind": "CiliumIdentity",
                    "metadata": {
                        "name": str(identity),
                        "labels": _k8s_labels(labels),
                    },
                    "security-labels": {f"{lb.source}:{lb.key}": lb.value for lb in labels},
                }
                ops: list[Op] = [
                    Put(index, str(identity).encode()),
                    Put(self._identity_key(identity), json.dumps(body).encode()),
                    Put(self._ref_key(identity), b"1"),
                ]
                compares = [
                    Compare(index, 0),
                    Compare(self._identity_key(identity), 0),
                    Compare(self._ref_key(identity), 0),
                ]
                if self.store.commit(compares, ops).succeeded:
                    return identity
        raise AllocationError("identity", "the store kept changing; could not allocate")

    def release(self, identity: int) -> int:
        """Drop one reference of this node; returns how many remain on this node."""
        if identity < 256:
            return 0
        with self._lock:
            for _ in range(_RETRIES):
                ref = self.store.get(self._ref_key(identity))
                if ref is None:
                    return 0
                count = int(ref.value) - 1
                op: Op = (
                    Put(self._ref_key(identity), str(count).encode())
                    if count > 0
                    else Delete(self._ref_key(identity))
                )
                if self.store.commit(
                    [Compare(self._ref_key(identity), ref.mod_revision)], [op]
                ).succeeded:
                    return max(count, 0)
        raise AllocationError(str(identity), "the store kept changing; could not release")


def _k8s_labels(labels: Sequence[Label]) -> dict[str, str]:
    """The ``k8s:`` labels as metadata labels (as upstream mirrors them onto the CRD)."""
    return {lb.key: lb.value for lb in labels if lb.source == "k8s" and len(lb.key) <= 63}


@dataclass(frozen=True, slots=True)
class Unused:
    """An identity no node references, with the revisions its deletion must compare."""

    identity: int
    identity_revision: int
    index_key: str
    index_revision: int


def unused_identities(store: Store) -> list[Unused]:
    client = ResourceClient(store)
    identities, _ = client.list("CiliumIdentity")
    referenced = {kv.key[len(REFS_PREFIX) :].split("/")[0] for kv in store.list(REFS_PREFIX).items}
    out = []
    for res in identities:
        if res.name in referenced:
            continue
        labels = [
            Label.parse(f"{k}={v}" if v else k)
            for k, v in (res.body.get("security-labels") or {}).items()
        ]
        index_key = INDEX_PREFIX + labels_key(labels)
        index = store.get(index_key)
        out.append(
            Unused(
                int(res.name),
                int(res.metadata["resourceVersion"]),
                index_key,
                index.mod_revision if index else 0,
            )
        )
    return out


def delete_identity(store: Store, unused: Unused) -> bool:
    """Delete an unused identity and its index, unless either changed since they were read
    (a node took a reference meanwhile: it rewrites the index key)."""
    key = ResourceClient(store).key_of(ResourceKey("CiliumIdentity", "", str(unused.identity)))
    compares = [
        Compare(key, unused.identity_revision),
        Compare(unused.index_key, unused.index_revision),
    ]
    ops: list[Op] = [Delete(key)]
    if unused.index_revision:
        ops.append(Delete(unused.index_key))
    return store.commit(compares, ops).succeeded
