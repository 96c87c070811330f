"""L2: the selector cache: each policy selector -> the identities it selects, kept current.

Like Cilium's ``pkg/policy/selectorcache.go``: selectors are registered when policy needs them
and evaluated against every known identity once; identity additions and removals then update
every registered selection incrementally and report which selectors changed, so that only
the endpoints using those selectors need new map entries.

The reserved identities (1-10, Cilium's numbers and labels) are always known. An inverted
index (label key and value -> identities) keeps the cost of a ``matchLabels`` selector
proportional to the identities that carry the label, not to all identities.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pylium.core.identity.labels import Label
from pylium.core.identity.numeric import ReservedIdentity
from pylium.core.policy.peers import IdentitySelector, selector_matches
from pylium.core.selectors import LabelSet
from pylium.model.policy import LabelSelector, Operator


def reserved_identities() -> dict[int, frozenset[str]]:
    """Reserved identities and their labels (``kube-apiserver`` also carries ``remote-node``)."""
    out = {
        int(r): frozenset({r.label}) for r in ReservedIdentity if r is not ReservedIdentity.UNKNOWN
    }
    out[int(ReservedIdentity.KUBE_APISERVER)] |= {ReservedIdentity.REMOTE_NODE.label}
    return out


@dataclass(frozen=True, slots=True)
class SelectionChange:
    added: frozenset[int] = frozenset()
    removed: frozenset[int] = frozenset()


class SelectorCache:
    """Mutable, pure (no I/O): identities, registered selectors and their selections."""

    def __init__(self, identities: Mapping[int, Iterable[str]] = {}) -> None:
        self._labels: dict[int, frozenset[str]] = {}
        self._sets: dict[int, LabelSet] = {}
        self._index: dict[str, dict[str, set[int]]] = {}
        self._selections: dict[IdentitySelector, frozenset[int]] = {}
        for ident, labels in {**reserved_identities(), **identities}.items():
            self._add_identity(ident, labels)

    # -- identities ------------------------------------------------------------------------

    def _add_identity(self, ident: int, labels: Iterable[str]) -> None:
        self._remove_identity(ident)
        frozen = frozenset(str(lb) for lb in labels)
        self._labels[ident] = frozen
        self._sets[ident] = LabelSet.parse(frozen)
        for text in frozen:
            label = Label.parse(text)
            self._index.setdefault(label.key, {}).setdefault(label.value, set()).add(ident)

    def _remove_identity(self, ident: int) -> None:
        for text in self._labels.pop(ident, ()):
            label = Label.parse(text)
            self._index[label.key][label.value].discard(ident)
        self._sets.pop(ident, None)

    @property
    def identities(self) -> Mapping[int, frozenset[str]]:
        return self._labels

    def labels_of(self, ident: int) -> frozenset[str] | None:
        return self._labels.get(ident)

    def update(
        self, added: Mapping[int, Iterable[str]] = {}, removed: Iterable[int] = ()
    ) -> dict[IdentitySelector, SelectionChange]:
        """Add (or relabel) and remove identities; returns the selections that changed."""
        touched = set(removed) | set(added)
        for ident in removed:
            self._remove_identity(ident)
        for ident, labels in added.items():
            self._add_identity(ident, labels)
        changes: dict[IdentitySelector, SelectionChange] = {}
        for sel, old in self._selections.items():
            now = {i for i in touched if i in self._sets and selector_matches(sel, self._sets[i])}
            new = (old - touched) | now
            if new != old:
                self._selections[sel] = frozenset(new)
                changes[sel] = SelectionChange(frozenset(new - old), frozenset(old - new))
        return changes

    # -- selectors -------------------------------------------------------------------------

    def select(self, selector: IdentitySelector) -> frozenset[int]:
        """The identities a selector selects; registers it so that updates maintain it."""
        found = self._selections.get(selector)
        if found is None:
            found = frozenset(
                i for i in self._candidates(selector) if selector_matches(selector, self._sets[i])
            )
            self._selections[selector] = found
        return found

    def selections(self) -> Mapping[IdentitySelector, frozenset[int]]:
        return self._selections

    def release(self, selector: IdentitySelector) -> None:
        self._selections.pop(selector, None)

    def _candidates(self, selector: IdentitySelector) -> Iterable[int]:
        """A superset of the selection, from the narrowest indexed equality of the selector."""
        if not isinstance(selector, LabelSelector):
            return self._sets
        best: set[int] | None = None
        options = [(k, (v,)) for k, v in selector.match_labels] + [
            (r.key, r.values) for r in selector.match_expressions if r.operator is Operator.IN
        ]
        for source_key, values in options:
            by_value = self._index.get(source_key.partition(":")[2], {})
            ids: set[int] = set().union(*(by_value.get(v, set()) for v in values))
            if best is None or len(ids) < len(best):
                best = ids
        return self._sets if best is None else best
