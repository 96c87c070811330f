"""L1: validation beyond the schema, as upstream's rule sanitizer and the API server apply it.

``CHECKS`` maps a kind to its check; each returns problems as (field path, message), which
:mod:`pylium.model.codec` places in a file and document. The checks themselves live in
:mod:`pylium.model.checks_cilium` (Cilium's kinds), :mod:`pylium.model.checks_k8s` (the
built-in kinds) and :mod:`pylium.model.fieldchecks` (fields several kinds share).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pylium.model import checks_cilium, checks_k8s
from pylium.model.fieldchecks import LABEL_SOURCES, annotation_problems, label_problems
from pylium.model.schema import Problem

__all__ = ["CHECKS", "LABEL_SOURCES", "Check", "annotation_problems", "label_problems"]

Check = Callable[[Mapping[str, Any]], Iterator[Problem]]

CHECKS: dict[str, Check] = {
    "CiliumNetworkPolicy": lambda b: checks_cilium.cilium_policy(b, clusterwide=False),
    "CiliumClusterwideNetworkPolicy": lambda b: checks_cilium.cilium_policy(b, clusterwide=True),
    "CiliumPodIPPool": checks_cilium.ip_pool,
    "NetworkPolicy": checks_k8s.network_policy,
    "Service": checks_k8s.service,
    "Pod": checks_k8s.pod,
    "Namespace": checks_k8s.namespace,
}
