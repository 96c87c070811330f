"""L1: checks of single fields that several kinds share: label keys and values, label
selectors, CIDRs with ``except`` lists, IANA service names (named ports).

Each check yields problems as (field path, message) in kubectl's words; the kind-level checks
(:mod:`pylium.model.checks_cilium`, :mod:`pylium.model.checks_k8s`) place them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pylium.model.schema import Path, Problem

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

LABEL_SOURCES = (
    "k8s",
    "reserved",
    "any",
    "unspec",
    "cidr",
    "cidrgroup",
    "fqdn",
    "node",
    "cni",
    "gen",
    "directory",
    "container",
)
"""Cilium's label sources: a policy selector key may name one (``k8s:app``, ``reserved:host``)."""


def _qualified_name_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_LABEL_NAME.match(name))


def annotation_problems(annotations: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    """Annotation keys are qualified names like label keys; values are free text."""
    for key in annotations:
        if not _qualified_name_ok(str(key)):
            yield (*path, key), f'Invalid value: "{key}": not a valid annotation key'


def label_problems(labels: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    """Kubernetes' rules for label keys (``[prefix/]name``) and values."""
    for key, value in labels.items():
        if not _qualified_name_ok(str(key)):
            yield (*path, key), f'Invalid value: "{key}": not a valid label key'
        if not isinstance(value, str):
            continue
        if len(value) > 63 or (value and not _LABEL_NAME.match(value)):
            yield (*path, key), f'Invalid value: "{value}": not a valid label value'


def _strip_source(key: str) -> str:
    source, sep, rest = key.partition(":")
    return rest if sep and source in LABEL_SOURCES else key


def selector_problems(selector: Any, path: Path) -> Iterator[Problem]:
    """A label selector: valid keys and values (a Cilium source prefix allowed on keys), and
    ``values`` given exactly when the operator needs them."""
    if not isinstance(selector, Mapping):
        return
    match_labels = selector.get("matchLabels") or {}
    if isinstance(match_labels, Mapping):
        for key, value in match_labels.items():
            for _, message in label_problems({_strip_source(key): value}, ()):
                yield (*path, "matchLabels", key), message
    for index, expr in enumerate(selector.get("matchExpressions") or []):
        if not isinstance(expr, Mapping):
            continue
        op, values = expr.get("operator"), expr.get("values") or []
        where = (*path, "matchExpressions", index, "values")
        if op in ("In", "NotIn") and not values:
            yield where, f"Required value: must be specified when `operator` is '{op}'"
        if op in ("Exists", "DoesNotExist") and values:
            yield where, f"Forbidden: may not be specified when `operator` is '{op}'"


def except_problems(
    cidr: Any, excepts: Any, path: Path, *, strict: bool = False
) -> Iterator[Problem]:
    """Every ``except`` entry must lie inside ``cidr`` (and be smaller when ``strict``, as
    NetworkPolicy's ipBlock requires)."""
    if not isinstance(cidr, str) or not isinstance(excepts, list):
        return
    try:
        outer = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return
    for index, item in enumerate(excepts):
        try:
            inner = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            continue
        if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
            yield (*path, "except", index), f'Invalid value: "{item}": must be within {cidr}'
        elif strict and inner.prefixlen <= outer.prefixlen:
            yield (
                (*path, "except", index),
                f'Invalid value: "{item}": must be a strict subset of `cidr` {cidr}',
            )


def iana_svc_name_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA service name (a named port), or None."""
    if len(name) > 15:
        return "must be no more than 15 characters"
    if not _IANA_SVC_NAME.match(name):
        return (
            "must contain only lower-case alphanumeric characters or '-', and begin and end "
            "with one of them"
        )
    if "--" in name:
        return "must not contain consecutive hyphens"
    if not any(c.isalpha() for c in name):
        return "must contain at least one letter (a-z)"
    return None


def mappings(items: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(index, item) for the mapping items of a list; anything else is the schema's concern."""
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                yield index, item
