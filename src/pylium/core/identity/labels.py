"""L2: which of an endpoint's labels make up its security identity.

Labels are written ``source:key=value`` (sources: k8s, reserved, unspec, any, cni, gen, cidr,
cidrgroup, fqdn, node, directory). A pod's identity labels are its own labels plus the
synthetic ones Cilium adds (namespace, namespace labels, service account, cluster), filtered
as ``pkg/labelsfilter`` does. The filter is a list of prefixes, each a regular expression that
must match at the start of the key, optionally restricted to a source (``k8s:app``), ``!`` to
ignore. A label is kept when the longest matching include is longer than the shortest
matching ignore, or when no ignore matches and the filter is not a whitelist. Cilium's default
list includes its own synthetic labels and ``app.kubernetes.io`` and ignores Kubernetes
bookkeeping (``pod-template-hash``, ``controller-revision-hash``, ...); any include given by
the user (``--labels``) turns the filter into a whitelist.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Source(enum.StrEnum):
    """Label sources (``pkg/labels/labels.go``)."""

    K8S = "k8s"
    RESERVED = "reserved"
    UNSPEC = "unspec"
    ANY = "any"
    CNI = "cni"
    GENERATED = "gen"
    CIDR = "cidr"
    CIDR_GROUP = "cidrgroup"
    FQDN = "fqdn"
    NODE = "node"
    DIRECTORY = "directory"


NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
SERVICE_ACCOUNT_LABEL = "io.cilium.k8s.policy.serviceaccount"
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
_K8S = Source.K8S.value
POD_NAME_LABEL = "io.kubernetes.pod.name"
"""Synthetic, but not part of the identity (it would give every pod its own)."""

DEFAULT_PREFIXES = (
    "reserved:.*",
    re.escape(NAMESPACE_LABEL),
    re.escape(NAMESPACE_LABELS_PREFIX.rstrip(".")),
    re.escape("app.kubernetes.io"),
    re.escape(CLUSTER_LABEL),
    re.escape(SERVICE_ACCOUNT_LABEL),
    r"!io\.kubernetes",
    r"!kubernetes\.io",
    r"!.*beta\.kubernetes\.io",
    r"!k8s\.io",
    r"!topology\.kubernetes\.io",
    r"!statefulset\.kubernetes\.io/pod-name",
    r"!apps\.kubernetes\.io/pod-index",
    r"!batch\.kubernetes\.io/job-completion-index",
    r"!batch\.kubernetes\.io/controller-uid",
    "!pod-template-generation",
    "!pod-template-hash",
    "!controller-revision-hash",
    "!controller-uid",
    "!annotation.*",
    "!etcd_node",
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
            source, rest = Source.UNSPEC.value, text
        key, _, value = rest.partition("=")
        return cls(source, key, value)


@dataclass(frozen=True, slots=True)
class LabelPrefix:
    """One filter entry: ``[source:][!]regex``."""

    pattern: str
    source: str = ""
    ignore: bool = False

    @classmethod
    def parse(cls, text: str) -> LabelPrefix:
        source, sep, prefix = text.partition(":")
        if not sep:
            source, prefix = "", text
        ignore = prefix.startswith("!")
        prefix = prefix.removeprefix("!")
        if not prefix:
            raise ValueError(f"label prefix {text!r} is empty")
        re.compile(prefix)  # a bad expression fails here, naming the pattern
        return cls(prefix, source, ignore)

    def match_length(self, label: Label) -> int | None:
        """How much of the key the prefix matches from its start; None when it does not."""
        if self.source and self.source != label.source:
            return None
        found = re.match(self.pattern, label.key)
        return found.end() if found else None


@dataclass(frozen=True, slots=True)
class LabelFilter:
    prefixes: tuple[LabelPrefix, ...] = tuple(LabelPrefix.parse(p) for p in DEFAULT_PREFIXES)
    whitelist: bool = False
    """True once the user adds an include: then only included labels are kept."""

    @classmethod
    def from_user(cls, patterns: Sequence[str]) -> LabelFilter:
        """Cilium's ``--labels`` syntax, appended to the defaults."""
        extra = tuple(LabelPrefix.parse(p) for p in patterns if p)
        return cls(prefixes=cls().prefixes + extra, whitelist=any(not p.ignore for p in extra))

    def relevant(self, label: Label) -> bool:
        included, ignored = 0, None
        for prefix in self.prefixes:
            length = prefix.match_length(label)
            if length is None:
                continue
            if prefix.ignore:
                ignored = length if ignored is None else min(ignored, length)
            else:
                included = max(included, length)
        if ignored is None and not self.whitelist:
            return True
        return included > (ignored or 0)


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
    labels = [Label(_K8S, k, v) for k, v in pod_labels.items()]
    labels.append(Label(_K8S, NAMESPACE_LABEL, namespace))
    labels += [Label(_K8S, NAMESPACE_LABELS_PREFIX + k, v) for k, v in namespace_labels.items()]
    labels.append(Label(_K8S, SERVICE_ACCOUNT_LABEL, service_account))
    labels.append(Label(_K8S, CLUSTER_LABEL, cluster))
    return tuple(sorted({lb for lb in labels if label_filter.relevant(lb)}))


def host_labels(
    node_labels: Mapping[str, str], label_filter: LabelFilter = LabelFilter()
) -> frozenset[str]:
    """The host endpoint's labels, as upstream gives them: ``reserved:host`` and the Node's
    labels as ``k8s:`` labels that pass the identity label filter (by default
    ``kubernetes.io/...`` labels do not: a nodeSelector on them selects no host)."""
    labels = [Label(_K8S, k, v) for k, v in node_labels.items()]
    return frozenset({"reserved:host", *(str(lb) for lb in labels if label_filter.relevant(lb))})
