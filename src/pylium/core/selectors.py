"""L2: label selector matching over identity label sets, as Cilium matches them.

Identity labels are ``source:key=value`` strings (``k8s:app=web``, ``reserved:host``).
Selector keys carry a source too (see :mod:`pylium.model.policy`); the ``any`` source matches
a label of that key from any source, every other source only labels of that source. The
operators are Kubernetes': ``matchLabels`` and ``In`` need the key with one of the values,
``NotIn`` matches when the key is absent or has none of the values, ``Exists`` and
``DoesNotExist`` look at the key only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pylium.core.identity.labels import Label
from pylium.model.policy import ANY_SOURCE, LabelSelector, Operator, Requirement


@dataclass(frozen=True, slots=True)
class LabelSet:
    """Labels indexed by key: ``key -> ((source, value), ...)``."""

    by_key: Mapping[str, tuple[tuple[str, str], ...]]

    @classmethod
    def parse(cls, labels: Iterable[str | Label]) -> LabelSet:
        by_key: dict[str, list[tuple[str, str]]] = {}
        for text in labels:
            label = text if isinstance(text, Label) else Label.parse(text)
            by_key.setdefault(label.key, []).append((label.source, label.value))
        return cls({k: tuple(v) for k, v in by_key.items()})

    def values(self, source_key: str) -> tuple[str, ...]:
        """Values of a selector key (``source:key``) in this set."""
        source, _, key = source_key.partition(":")
        return tuple(v for s, v in self.by_key.get(key, ()) if source == ANY_SOURCE or s == source)

    def has(self, source_key: str) -> bool:
        return bool(self.values(source_key))

    def keys_of_source(self, source: str) -> tuple[str, ...]:
        """Keys that have a label of this source (``cidr`` labels are all key, no value)."""
        return tuple(k for k, pairs in self.by_key.items() if any(s == source for s, _ in pairs))


def requirement_matches(req: Requirement, labels: LabelSet) -> bool:
    values = labels.values(req.key)
    if req.operator is Operator.IN:
        return any(v in req.values for v in values)
    if req.operator is Operator.NOT_IN:
        return not any(v in req.values for v in values)
    if req.operator is Operator.EXISTS:
        return bool(values)
    return not values


def matches(selector: LabelSelector, labels: LabelSet | Iterable[str]) -> bool:
    """Does the selector select an identity with these labels? The empty one selects all."""
    lset = labels if isinstance(labels, LabelSet) else LabelSet.parse(labels)
    return all(value in lset.values(key) for key, value in selector.match_labels) and all(
        requirement_matches(r, lset) for r in selector.match_expressions
    )


def parse_selector_text(text: str) -> LabelSelector:
    """A selector from ``key=value`` / ``key`` terms separated by commas (CLI, tests).

    Keys without a source get ``any``; ``!key`` means DoesNotExist, a bare key Exists.
    """
    labels: list[tuple[str, str]] = []
    exprs: list[Requirement] = []
    for term in (t.strip() for t in text.split(",")):
        if not term:
            continue
        negate = term.startswith("!")
        term = term.lstrip("!")
        key, eq, value = term.partition("=")
        source, sep, rest = key.partition(":")
        key = key if sep and source and rest else f"{ANY_SOURCE}:{key}"
        if eq:
            labels.append((key, value))
        else:
            exprs.append(Requirement(key, Operator.DOES_NOT_EXIST if negate else Operator.EXISTS))
    return LabelSelector(tuple(sorted(labels)), tuple(sorted(exprs)))
