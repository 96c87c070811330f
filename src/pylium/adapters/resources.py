"""L3: typed access to resources (Pods, CiliumNodes, policies, ...) kept in any :class:`Store`.

Key layout: ``<root>/<Kind>/<namespace>/<name>`` for namespaced kinds and
``<root>/<Kind>/<name>`` for cluster-scoped ones (the root defaults to ``resources``).
Values are the objects' JSON; on read, ``metadata.resourceVersion`` is set from the key's
``mod_revision`` so that callers can do optimistic concurrency the Kubernetes way.

``apply`` writes a batch atomically: every document is written, or none is.
"""

from __future__ import annotations

import copy
import enum
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pylium.adapters.store.api import (
    Compare,
    Delete,
    EventType,
    KeyValue,
    Op,
    Put,
    Store,
    Watch,
)
from pylium.base.errors import StoreError
from pylium.model.resource import Resource, ResourceKey

DEFAULT_ROOT = "resources"
_CONFLICT_RETRIES = 200


def _attempts() -> Iterator[int]:
    """Attempt numbers for an optimistic-concurrency loop, sleeping with jittered exponential
    backoff between attempts so that competing writers spread out instead of colliding."""
    for attempt in range(_CONFLICT_RETRIES):
        if attempt:
            time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 10))))
        yield attempt


Body = dict[str, Any]


class ApplyAction(enum.Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    key: ResourceKey
    action: ApplyAction


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    """A change seen by :meth:`ResourceClient.watch`; ``resource`` is None for deletions."""

    type: EventType
    key: ResourceKey
    resource: Resource | None
    revision: int


ApplyResults = list[ApplyResult]
Flags = list[bool]


class ConflictError(StoreError):
    """An object changed between read and write too many times in a row."""


def _strip_server_fields(body: Mapping[str, Any]) -> Body:
    """The object as the user wrote it: without fields the store maintains."""
    out = copy.deepcopy(dict(body))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            meta.pop(field, None)
    return out


class ResourceClient:
    """Resource-level operations over a :class:`Store`."""

    def __init__(self, store: Store, *, root: str = DEFAULT_ROOT) -> None:
        self.store = store
        self.root = root.rstrip("/")

    # -- keys -------------------------------------------------------------------------------

    def key_of(self, key: ResourceKey) -> str:
        if key.namespace:
            return f"{self.root}/{key.kind}/{key.namespace}/{key.name}"
        return f"{self.root}/{key.kind}/{key.name}"

    def prefix_of(self, kind: str, namespace: str | None = None) -> str:
        if namespace:
            return f"{self.root}/{kind}/{namespace}/"
        return f"{self.root}/{kind}/"

    def _parse_key(self, key: str) -> ResourceKey:
        parts = key[len(self.root) + 1 :].split("/")
        if len(parts) == 3:
            return ResourceKey(parts[0], parts[1], parts[2])
        if len(parts) == 2:
            return ResourceKey(parts[0], "", parts[1])
        raise StoreError(key, "not a resource key")

    def _decode(self, kv: KeyValue) -> Resource:
        try:
            body = _loads(kv.value)
        except ValueError as err:
            raise StoreError(kv.key, f"stored object is not JSON: {err}") from err
        body.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        return Resource(body)

    # -- reads ------------------------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str = "") -> Resource | None:
        kv = self.store.get(self.key_of(ResourceKey(kind, namespace, name)))
        return self._decode(kv) if kv else None

    def list(self, kind: str, namespace: str | None = None) -> tuple[list[Resource], int]:
        """Every object of ``kind`` (in ``namespace`` when given) and the revision read at."""
        result = self.store.list(self.prefix_of(kind, namespace))
        items = [self._decode(kv) for kv in result.items]
        items.sort(key=lambda r: (r.namespace, r.name))
        return items, result.revision

    def list_keyed(self, kind: str) -> tuple[dict[str, Resource], int]:
        """Every object of ``kind`` by store key (unsorted), and the revision read at."""
        result = self.store.list(self.prefix_of(kind))
        return {kv.key: self._decode(kv) for kv in result.items}, result.revision

    # -- writes -----------------------------------------------------------------------------

    def apply(self, resources: Sequence[Resource]) -> ApplyResults:
        """Create or update every resource in one atomic transaction (all or none).

        The status of an existing object is kept when the applied document has none, since
        status belongs to the controllers, not to the user.
        """
        for _ in _attempts():
            compares: list[Compare] = []
            ops: list[Op] = []
            results: list[ApplyResult] = []
            for res in resources:
                key = self.key_of(res.key)
                current = self.store.get(key)
                compares.append(Compare(key, current.mod_revision if current else 0))
                new_body = _strip_server_fields(res.body)
                old = json.loads(current.value) if current else None
                if old is not None and "status" not in new_body and "status" in old:
                    new_body["status"] = old["status"]
                if old is not None and _strip_server_fields(old) == new_body:
                    results.append(ApplyResult(res.key, ApplyAction.UNCHANGED))
                    continue
                new_body = _with_server_fields(new_body, old)
                action = ApplyAction.CREATED if old is None else ApplyAction.CONFIGURED
                ops.append(Put(key, _encode(new_body)))
                results.append(ApplyResult(res.key, action))
            if not ops:
                return results
            if self.store.commit(compares, ops).succeeded:
                return results
        raise ConflictError(self.root, "objects kept changing while applying; try again")

    def create(self, resource: Resource) -> bool:
        """Create ``resource`` if absent; False when it already exists."""
        key = self.key_of(resource.key)
        body = _with_server_fields(_strip_server_fields(resource.body), None)
        return self.store.commit([Compare(key, 0)], [Put(key, _encode(body))]).succeeded

    def put(self, resource: Resource) -> Resource | None:
        """Replace ``resource`` whole, whatever is stored (a controller owning the object)."""
        body = dict(resource.body)
        return self.mutate(resource.kind, resource.name, resource.namespace, fn=lambda _: body)

    def mutate(
        self,
        kind: str,
        name: str,
        namespace: str = "",
        *,
        fn: Callable[[Body | None], Body | None],
    ) -> Resource | None:
        """Read-modify-write with compare-and-swap, retried on conflict.

        ``fn`` gets a deep copy of the current body (None when absent) and returns the new
        body, or None to delete the object. Returns the written resource (None if deleted).
        """
        rkey = ResourceKey(kind, namespace, name)
        key = self.key_of(rkey)
        for _ in _attempts():
            current = self.store.get(key)
            old = json.loads(current.value) if current else None
            new = fn(copy.deepcopy(old))
            compare = [Compare(key, current.mod_revision if current else 0)]
            if new is None:
                if current is None:
                    return None
                if self.store.commit(compare, [Delete(key)]).succeeded:
                    return None
                continue
            stripped = _strip_server_fields(new)
            if old is not None and current is not None and stripped == _strip_server_fields(old):
                return self._decode(current)
            stripped = _with_server_fields(stripped, old)
            result = self.store.commit(compare, [Put(key, _encode(stripped))])
            if result.succeeded:
                stripped.setdefault("metadata", {})["resourceVersion"] = str(result.revision)
                return Resource(stripped)
        raise ConflictError(key, "object kept changing; try again")

    def delete(self, kind: str, name: str, namespace: str = "") -> bool:
        return self.store.delete(self.key_of(ResourceKey(kind, namespace, name)))

    def delete_many(self, keys: Sequence[ResourceKey]) -> Flags:
        """Delete every existing object among ``keys`` atomically; returns which existed."""
        for _ in _attempts():
            compares: list[Compare] = []
            ops: list[Op] = []
            existed: list[bool] = []
            for rkey in keys:
                key = self.key_of(rkey)
                current = self.store.get(key)
                existed.append(current is not None)
                compares.append(Compare(key, current.mod_revision if current else 0))
                if current is not None:
                    ops.append(Delete(key))
            if not ops or self.store.commit(compares, ops).succeeded:
                return existed
        raise ConflictError(self.root, "objects kept changing while deleting; try again")

    # -- watch ------------------------------------------------------------------------------

    def watch(
        self, kind: str, namespace: str | None = None, *, start_revision: int
    ) -> ResourceWatch:
        return ResourceWatch(
            self, self.store.watch(self.prefix_of(kind, namespace), start_revision=start_revision)
        )


class ResourceWatch:
    """Iterates :class:`ResourceEvent` from a store watch; ``close()`` ends it."""

    def __init__(self, client: ResourceClient, watch: Watch) -> None:
        self._client = client
        self._watch = watch

    def __iter__(self) -> Iterator[ResourceEvent]:
        for ev in self._watch:
            key = self._client._parse_key(ev.key)
            resource = None
            if ev.type is EventType.PUT:
                resource = self._client._decode(KeyValue(ev.key, ev.value, 0, ev.revision, 0))
            yield ResourceEvent(ev.type, key, resource, ev.revision)

    def close(self) -> None:
        self._watch.close()


def _with_server_fields(new: Body, old: Mapping[str, Any] | None) -> Body:
    """``new`` with the fields the store maintains: uid and creationTimestamp (kept from
    ``old``, or fresh), and generation (bumped when anything but metadata and status changed)."""
    meta = new.setdefault("metadata", {})
    if old is None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta["generation"] = 1
        return new
    old_meta = old.get("metadata", {})
    for name in ("uid", "creationTimestamp"):
        if name in old_meta:
            meta[name] = old_meta[name]

    def spec_of(body: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("metadata", "status")}

    generation = int(old_meta.get("generation", 1))
    meta["generation"] = generation + (1 if spec_of(old) != spec_of(new) else 0)
    return new


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _loads(text: str | bytes) -> Any:
    """``json.loads``, by orjson (a quarter of the time; a full resync decodes every
    document); what orjson refuses and ``json`` reads (NaN, integers beyond 64 bits) falls
    back to ``json``, so every stored value reads as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
