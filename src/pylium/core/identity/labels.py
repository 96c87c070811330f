"""L2: which of an endpoint's labels make up its security identity.

Labels are written ``source:key=value``. A pod's identity labels are its own labels plus the
synthetic ones Cilium adds (namespace, namespace labels, service account, cluster), filtered
by Cilium's default identity-relevant prefixes (``pkg/labelsfilter``): everything is kept
except the excluded Kubernetes bookkeeping labels. A user filter (Cilium's ``--labels``) uses
the same syntax: ``prefix`` to include, ``!prefix`` to exclude; any include switches to
whitelist semantics, as upstream does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
SERVICE_ACCOUNT_LABEL = "io.cilium.k8s.policy.serviceaccount"
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"

DEFAULT_INCLUDES = (
    NAMESPACE_LABEL,
    NAMESPACE_LABELS_PREFIX.rstrip("."),
    "app.kubernetes.io",
    CLUSTER_LABEL,
    SERVICE_ACCOUNT_LABEL,
)
DEFAULT_EXCLUDES = (
    r"io\.kubernetes",
    r"kubernetes\.io",
    r".*beta\.kubernetes\.io",
    r"k8s\.io",
    r"topology\.kubernetes\.io",
    r"statefulset\.kubernetes\.io/pod-name",
    r"apps\.kubernetes\.io/pod-index",
    r"batch\.kubernetes\.io/job-completion-index",
    r"batch\.kubernetes\.io/controller-uid",
    r"pod-template-generation",
    r"pod-template-hash",
    r"controller-revision-hash",
    r"controller-uid",
    r"annotation.*",
    r"etcd_node",
)


@dataclass(frozen=True, slots=True, order=True)
class Label:
    source: str
    key: str
    value: str = ""

    def __str__(self) -> str:
        return (
            f"{self.source}:{self.key}={self.value}" if self.value else f"{self.source}:{self.key}"
        )

    @classmethod
    def parse(cls, text: str) -> Label:
        """``source:key=value``; a missing source means ``unspec``."""
        source, sep, rest = text.partition(":")
        if not sep or "=" in source or "/" in source:
            source, rest = "unspec", text
        key, _, value = rest.partition("=")
        return cls(source, key, value)


@dataclass(frozen=True, slots=True)
class LabelFilter:
    includes: tuple[str, ...] = ()
    """Prefixes (regular expressions anchored at the start) that are kept; empty: all."""
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES

    @classmethod
    def from_user(cls, patterns: Sequence[str]) -> LabelFilter:
        """Cilium's ``--labels`` syntax on top of the defaults."""
        includes = tuple(p for p in patterns if not p.startswith("!"))
        excludes = tuple(p[1:] for p in patterns if p.startswith("!"))
        return cls(includes=includes, excludes=DEFAULT_EXCLUDES + excludes)

    def relevant(self, label: Label) -> bool:
        if label.source == "reserved":
            return True
        if any(re.match(p, label.key) for p in DEFAULT_INCLUDES):
            return True
        if self.includes:
            return any(_matches(p, label) for p in self.includes)
        return not any(_matches(p, label) for p in self.excludes)


def _matches(pattern: str, label: Label) -> bool:
    """A key prefix, optionally with a source (``k8s:app`` matches only ``k8s`` labels)."""
    source, sep, key = pattern.partition(":")
    if sep and re.fullmatch(r"[a-z0-9-]+", source):
        return label.source == source and re.match(key, label.key) is not None
    return re.match(pattern, label.key) is not None


def identity_labels(
    *,
    pod_labels: Mapping[str, str],
    namespace: str,
    namespace_labels: Mapping[str, str] = {},
    service_account: str = "default",
    cluster: str = "default",
    label_filter: LabelFilter = LabelFilter(),
) -> tuple[Label, ...]:
    """The sorted identity-relevant labels of a pod, as ``k8s:`` labels."""
    labels = [Label("k8s", k, v) for k, v in pod_labels.items()]
    labels.append(Label("k8s", NAMESPACE_LABEL, namespace))
    labels += [Label("k8s", NAMESPACE_LABELS_PREFIX + k, v) for k, v in namespace_labels.items()]
    labels.append(Label("k8s", SERVICE_ACCOUNT_LABEL, service_account))
    labels.append(Label("k8s", CLUSTER_LABEL, cluster))
    return tuple(sorted({lb for lb in labels if label_filter.relevant(lb)}))
