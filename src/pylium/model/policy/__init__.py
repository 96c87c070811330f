"""L1: typed Cilium policy rules, and their parsers from validated CNP, CCNP and NetworkPolicy
documents (validated by :mod:`pylium.model.codec`). See ``rules.py`` for the shapes,
``cilium.py`` and ``netpol.py`` for the mapping Cilium applies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pylium.model.policy.cilium import (
    parse_cilium_rule,
    parse_selector,
    policy_labels,
    rules_from_cilium_policy,
)
from pylium.model.policy.netpol import rules_from_network_policy
from pylium.model.policy.rules import (
    ANY_SOURCE,
    CCNP,
    CLUSTER_KEY,
    CNP,
    K8S_SOURCE,
    KNP,
    NAMESPACE_KEY,
    NAMESPACE_LABELS_PREFIX,
    POLICY_DERIVED_FROM,
    POLICY_NAME,
    POLICY_NAME_ANNOTATIONS,
    POLICY_NAMESPACE,
    POLICY_UID,
    CIDRRule,
    DefaultDeny,
    EgressRule,
    Entity,
    ICMPField,
    IngressRule,
    IPNetwork,
    LabelSelector,
    Operator,
    PeerRule,
    PolicyRef,
    PortProtocol,
    PortRule,
    Protocol,
    Requirement,
    Rule,
)

__all__ = [
    "ANY_SOURCE",
    "CCNP",
    "CLUSTER_KEY",
    "CNP",
    "K8S_SOURCE",
    "KNP",
    "NAMESPACE_KEY",
    "NAMESPACE_LABELS_PREFIX",
    "POLICY_DERIVED_FROM",
    "POLICY_NAME",
    "POLICY_NAMESPACE",
    "POLICY_NAME_ANNOTATIONS",
    "POLICY_UID",
    "CIDRRule",
    "DefaultDeny",
    "EgressRule",
    "Entity",
    "ICMPField",
    "IPNetwork",
    "IngressRule",
    "LabelSelector",
    "Operator",
    "PeerRule",
    "PolicyRef",
    "PortProtocol",
    "PortRule",
    "Protocol",
    "Requirement",
    "Rule",
    "parse_cilium_rule",
    "parse_selector",
    "policy_labels",
    "rules_from_cilium_policy",
    "rules_from_network_policy",
    "rules_from_object",
]


def rules_from_object(body: Mapping[str, Any], *, cluster: str = "") -> tuple[Rule, ...]:
    """Rules of any of the three policy kinds; other kinds have none."""
    kind = body.get("kind")
    if kind in (CNP, CCNP):
        return rules_from_cilium_policy(body, cluster=cluster)
    if kind == KNP:
        return rules_from_network_policy(body, cluster=cluster)
    return ()
