"""L1: the generic resource envelope every kind shares (apiVersion, kind, metadata, body).

A :class:`Resource` is a validated document: its ``body`` is the whole object as a plain
mapping (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``, ...), which is also
exactly what the store holds. Typed views of particular kinds are built from it by the kind's
own model module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Identity of a stored object: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Resource:
    """A validated object. ``body`` must not be mutated; copy it to change it."""

    body: Mapping[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.body.get("metadata") or {}
        assert type(meta) is dict or isinstance(meta, Mapping)  # the first test is much faster
        return meta

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "") or "")

    @property
    def labels(self) -> Mapping[str, str]:
        labels = self.metadata.get("labels") or {}
        assert isinstance(labels, Mapping)
        return labels

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)
