"""L2: the policy repository: every rule in force, grouped by the object it came from.

Like Cilium's ``pkg/policy/repository.go``: rules are replaced per source object (a CNP, CCNP
or NetworkPolicy, keyed by :class:`~pylium.model.resource.ResourceKey`), and every change
bumps the revision, so that an endpoint can tell whether its resolved policy is current.
Replacing an object's rules is all or nothing. Mutable but pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pylium.core.policy.peers import NO_NAMED_PORTS, NamedPorts
from pylium.core.policy.resolve import PolicyConfig, ResolvedPolicy, Subject, resolve
from pylium.model import policy
from pylium.model.resource import ResourceKey


class Repository:
    def __init__(self) -> None:
        self._rules: dict[ResourceKey, tuple[policy.Rule, ...]] = {}
        self._revision = 1
        self._index: _SubjectIndex | None = None

    @property
    def revision(self) -> int:
        """Starts at 1 (Cilium's initial revision) and grows by one per change."""
        return self._revision

    def replace(self, key: ResourceKey, rules: Sequence[policy.Rule]) -> int:
        """Set the rules of one object (none: delete it); returns the new revision."""
        if rules:
            self._rules[key] = tuple(rules)
        elif key not in self._rules:
            return self._revision
        else:
            del self._rules[key]
        self._revision += 1
        self._index = None
        return self._revision

    def delete(self, key: ResourceKey) -> int:
        return self.replace(key, ())

    def apply_object(self, body: Mapping[str, Any], *, cluster: str = "") -> int:
        """Replace the rules of a validated policy object (any of the three kinds)."""
        meta = body.get("metadata") or {}
        namespace = (
            "" if body.get("kind") == policy.CCNP else str(meta.get("namespace") or "default")
        )
        key = ResourceKey(str(body.get("kind")), namespace, str(meta.get("name", "")))
        return self.replace(key, policy.rules_from_object(body, cluster=cluster))

    def keys(self) -> tuple[ResourceKey, ...]:
        return tuple(sorted(self._rules))

    def rules_of(self, key: ResourceKey) -> tuple[policy.Rule, ...]:
        return self._rules.get(key, ())

    def rules(self) -> tuple[policy.Rule, ...]:
        return tuple(r for key in sorted(self._rules) for r in self._rules[key])

    def __len__(self) -> int:
        return sum(len(v) for v in self._rules.values())

    def resolve(
        self,
        subject: Subject,
        config: PolicyConfig = PolicyConfig(),
        *,
        ingress_named_ports: NamedPorts = NO_NAMED_PORTS,
        egress_named_ports: NamedPorts = NO_NAMED_PORTS,
    ) -> ResolvedPolicy:
        """The endpoint's policy at the current revision."""
        if self._index is None:
            self._index = _SubjectIndex(self.rules())
        return resolve(
            self._index.candidates(subject),
            subject,
            config,
            ingress_named_ports=ingress_named_ports,
            egress_named_ports=egress_named_ports,
            revision=self._revision,
        )


class _SubjectIndex:
    """Rules by one ``matchLabels`` pair of their subject selector, so that resolving an
    endpoint only tests the rules that can select it (order of the repository kept)."""

    def __init__(self, rules: Sequence[policy.Rule]) -> None:
        self._rules = rules
        self._always: list[int] = []
        self._by_label: dict[tuple[str, str], list[int]] = {}
        for pos, rule in enumerate(rules):
            sel = rule.endpoint_selector or rule.node_selector
            if sel is None or not sel.match_labels:
                self._always.append(pos)
                continue
            key, value = sel.match_labels[0]
            self._by_label.setdefault((key.partition(":")[2], value), []).append(pos)

    def candidates(self, subject: Subject) -> list[policy.Rule]:
        found = set(self._always)
        for text in subject.labels:
            key, _, value = text.partition(":")[2].partition("=")
            found.update(self._by_label.get((key, value), ()))
        return [self._rules[pos] for pos in sorted(found)]


def load_objects(bodies: Iterable[Mapping[str, Any]], *, cluster: str = "") -> Repository:
    """A repository holding the rules of these validated policy objects."""
    repo = Repository()
    for body in bodies:
        repo.apply_object(body, cluster=cluster)
    return repo
