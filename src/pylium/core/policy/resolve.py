"""L2: which rules apply to one endpoint, per direction, and whether the direction is enforced.

Cilium's ``computePolicyEnforcementAndRules`` (``pkg/policy/repository.go``):

- the host endpoint (identity 1) takes only ``nodeSelector`` rules, and only with the host
  firewall on; every other endpoint takes only ``endpointSelector`` rules;
- mode ``never``: nothing is enforced; mode ``always`` and ``reserved:init`` endpoints:
  both directions are enforced (default deny) whatever selects them;
- mode ``default``: a direction is enforced once a selecting rule has a section (allow or
  deny) in it; rules with ``enableDefaultDeny.<dir>: false`` do not count, and if only such
  rules select the endpoint the direction gets a lowest-priority allow-all;
- an enforced ingress of a non-host endpoint allows the local host (``allow-localhost``,
  ``auto`` = ``always`` in Kubernetes), unless a deny rule says otherwise.

The result lists, per direction, the flat :class:`~.peers.Contribution` list that both the
map state and the explainer consume.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from pylium.core import selectors
from pylium.core.policy.peers import (
    ANY_L4,
    NO_NAMED_PORTS,
    WILDCARD,
    Contribution,
    Direction,
    NamedPorts,
    Origin,
    has_direction,
    rule_contributions,
)
from pylium.model.policy import LabelSelector, PolicyRef, Rule


class EnforcementMode(enum.StrEnum):
    """Agent flag ``enable-policy`` (Helm ``policyEnforcementMode``)."""

    DEFAULT = "default"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    mode: EnforcementMode = EnforcementMode.DEFAULT
    audit: bool = False
    """``policy-audit-mode``: would-be drops pass and are reported as AUDIT."""
    host_firewall: bool = False
    """``enable-host-firewall``: nodeSelector rules apply to the host endpoint."""
    allow_localhost: bool = True
    """``allow-localhost=auto`` resolves to ``always`` in Kubernetes."""
    cluster_name: str = "default"
    """``cluster-name``, for the ``cluster`` entity."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The endpoint whose policy is resolved: its identity and identity labels."""

    identity: int
    labels: frozenset[str]

    @property
    def is_host(self) -> bool:
        return self.identity == 1 or "reserved:host" in self.labels

    @property
    def is_init(self) -> bool:
        return "reserved:init" in self.labels


class Why(enum.StrEnum):
    """Why a direction is (not) enforced; the explainer prints these."""

    NO_RULES = "no policy selects this endpoint"
    NEVER = "policy enforcement mode is never"
    HOST_FIREWALL_OFF = "the host firewall is off"
    ALWAYS = "policy enforcement mode is always"
    INIT = "the endpoint has reserved:init (always enforced)"
    RULES = "rules select this endpoint"
    DEFAULT_ALLOW = "only rules with enableDefaultDeny=false select this endpoint"


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectionPolicy:
    direction: Direction
    enforced: bool
    why: Why
    rules: tuple[Rule, ...] = ()
    """Rules that select the endpoint and have a section in this direction."""
    contributions: tuple[Contribution, ...] = ()

    @property
    def refs(self) -> tuple[PolicyRef, ...]:
        return tuple(r.ref for r in self.rules)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedPolicy:
    subject: Subject
    config: PolicyConfig
    ingress: DirectionPolicy
    egress: DirectionPolicy
    revision: int = 0

    def direction(self, direction: Direction) -> DirectionPolicy:
        return self.ingress if direction is Direction.INGRESS else self.egress


def selects(rule: Rule, subject: Subject, config: PolicyConfig, lset: selectors.LabelSet) -> bool:
    """Does the rule's subject selector select this endpoint (host vs pod kind included)?"""
    if subject.is_host:
        sel: LabelSelector | None = rule.node_selector if config.host_firewall else None
    else:
        sel = rule.endpoint_selector
    return sel is not None and selectors.matches(sel, lset)


def selecting_rules(
    rules: Iterable[Rule], subject: Subject, config: PolicyConfig
) -> tuple[Rule, ...]:
    lset = selectors.LabelSet.parse(subject.labels)
    return tuple(r for r in rules if selects(r, subject, config, lset))


def _implicit(direction: Direction, what: str) -> Origin:
    return Origin(implicit=f"{what}-{direction}")


def _direction(
    selected: tuple[Rule, ...],
    subject: Subject,
    config: PolicyConfig,
    direction: Direction,
    named_ports: NamedPorts,
) -> DirectionPolicy:
    allow_all = Contribution(False, WILDCARD, ANY_L4, _implicit(direction, "allow-any"))
    if subject.is_host and not config.host_firewall:
        return DirectionPolicy(
            direction=direction,
            enforced=False,
            why=Why.HOST_FIREWALL_OFF,
            contributions=(allow_all,),
        )
    if config.mode is EnforcementMode.NEVER:
        return DirectionPolicy(
            direction=direction, enforced=False, why=Why.NEVER, contributions=(allow_all,)
        )
    rules = tuple(r for r in selected if has_direction(r, direction))
    if config.mode is EnforcementMode.ALWAYS:
        why = Why.ALWAYS
    elif subject.is_init:
        why = Why.INIT
    elif any(_default_deny(r, direction) for r in rules):
        why = Why.RULES
    elif rules:
        why = Why.DEFAULT_ALLOW
    else:
        return DirectionPolicy(
            direction=direction, enforced=False, why=Why.NO_RULES, contributions=(allow_all,)
        )
    contribs = [
        c
        for r in rules
        for c in rule_contributions(
            r, direction, named_ports=named_ports, cluster_name=config.cluster_name
        )
    ]
    if why is Why.DEFAULT_ALLOW:
        contribs.append(
            Contribution(False, WILDCARD, ANY_L4, _implicit(direction, "default-allow"))
        )
    if direction is Direction.INGRESS and config.allow_localhost and not subject.is_host:
        host = LabelSelector((("reserved:host", ""),))
        contribs.append(Contribution(False, host, ANY_L4, _implicit(direction, "allow-localhost")))
    return DirectionPolicy(
        direction=direction,
        enforced=True,
        why=why,
        rules=rules,
        contributions=tuple(dict.fromkeys(contribs)),
    )


def _default_deny(rule: Rule, direction: Direction) -> bool:
    dd = rule.enable_default_deny
    flag = dd.ingress if direction is Direction.INGRESS else dd.egress
    return flag is not False


def resolve(
    rules: Iterable[Rule],
    subject: Subject,
    config: PolicyConfig = PolicyConfig(),
    *,
    ingress_named_ports: NamedPorts = NO_NAMED_PORTS,
    egress_named_ports: NamedPorts = NO_NAMED_PORTS,
    revision: int = 0,
) -> ResolvedPolicy:
    """The endpoint's policy per direction. Named ports: the endpoint's own for ingress,
    every endpoint's for egress."""
    selected = selecting_rules(rules, subject, config)
    return ResolvedPolicy(
        subject=subject,
        config=config,
        ingress=_direction(selected, subject, config, Direction.INGRESS, ingress_named_ports),
        egress=_direction(selected, subject, config, Direction.EGRESS, egress_named_ports),
        revision=revision,
    )
