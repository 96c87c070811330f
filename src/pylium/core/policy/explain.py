"""L2: the verdict for one packet and why, evaluated straight from the rules.

Given a resolved endpoint policy, a remote identity (number and labels), protocol, port (ICMP
type for ICMP) and direction, :func:`explain` evaluates every contribution directly (label
selectors against the remote labels, port ranges by comparison), without the selector cache
or map entries; the tests hold the map state's lookup to the same answers.

Order of evaluation, as Cilium enforces it: a matching deny rule drops (reason 181, "Policy
denied by denylist"); else a matching allow passes; else an enforced direction drops by default
deny (reason 133, "Policy denied"). With ``policy-audit-mode`` a would-be drop passes and is
reported as AUDIT with the reason it would have had.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from pylium.core import selectors
from pylium.core.policy.peers import (
    Contribution,
    Direction,
    Origin,
    port_proto,
    selector_matches,
)
from pylium.core.policy.resolve import DirectionPolicy, ResolvedPolicy, Why
from pylium.core.policy.selectorcache import SelectorCache
from pylium.model.policy import PolicyRef


class Verdict(enum.StrEnum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"
    AUDIT = "AUDIT"


class DropReason(enum.IntEnum):
    """Cilium's drop reasons for policy (``pkg/monitor/api/drop.go``)."""

    POLICY_DENIED = 133
    POLICY_DENY = 181

    @property
    def text(self) -> str:
        if self is DropReason.POLICY_DENIED:
            return "Policy denied"
        return "Policy denied by denylist"


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    verdict: Verdict
    direction: Direction
    remote_identity: int
    proto: int
    port: int
    drop_reason: DropReason | None = None
    """The reason of the drop (or, for AUDIT, of the drop that audit mode let pass)."""
    matched: tuple[Origin, ...] = ()
    """Rule entries that decided: the deny entries, or else the allow entries."""
    selecting: tuple[PolicyRef, ...] = ()
    """Rules that select the endpoint in this direction."""
    summary: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.DENIED

    def render(self) -> str:
        lines = [f"Verdict: {self.verdict}"]
        if self.drop_reason is not None:
            lines[0] += f" (drop reason {int(self.drop_reason)}: {self.drop_reason.text})"
        lines.append(self.summary)
        lines.extend(f"  by {o}" for o in self.matched)
        return "\n".join(lines)


def _matching(
    contribs: Iterable[Contribution], labels: selectors.LabelSet, proto: int, port: int
) -> tuple[Origin, ...]:
    found = {
        c.origin: None
        for c in contribs
        if c.l4.matches(proto, port) and selector_matches(c.selector, labels)
    }
    return tuple(sorted(found, key=str))


def explain(
    resolved: ResolvedPolicy,
    *,
    remote_identity: int,
    remote_labels: Iterable[str],
    proto: int,
    port: int,
    direction: Direction,
) -> Explanation:
    """The verdict for one packet of the endpoint's traffic in ``direction``."""
    policy = resolved.direction(direction)
    labels = selectors.LabelSet.parse(remote_labels)
    l4 = port_proto(proto, port, port) if proto else "any protocol"
    peer = f"identity {remote_identity} on {l4}"
    reason: DropReason | None = None
    matched = _matching((c for c in policy.contributions if c.deny), labels, proto, port)
    if matched:
        reason = DropReason.POLICY_DENY
        summary = f"{direction} for {peer} is denied by deny rules"
    else:
        matched = _matching((c for c in policy.contributions if not c.deny), labels, proto, port)
        if not matched:
            reason = DropReason.POLICY_DENIED
            summary = (
                f"default deny: {direction} is enforced ({_cause(policy)}) "
                f"and no rule allows {peer}"
            )
        elif not policy.enforced:
            summary = f"{direction} is not enforced ({policy.why}): {peer} is allowed"
        elif matched == (Origin(implicit=f"default-allow-{direction}"),):
            summary = f"{direction} allows all by default ({_cause(policy)}): {peer} is allowed"
        else:
            summary = f"{direction} for {peer} is allowed"
    verdict = Verdict.ALLOWED if reason is None else Verdict.DENIED
    if reason is not None and resolved.config.audit:
        verdict = Verdict.AUDIT
        summary = f"audit mode lets it pass; it would be dropped: {summary}"
    return Explanation(
        verdict=verdict,
        direction=direction,
        remote_identity=remote_identity,
        proto=proto,
        port=port,
        drop_reason=reason,
        matched=matched,
        selecting=policy.refs,
        summary=summary,
    )


def _cause(policy: DirectionPolicy) -> str:
    if not policy.rules:
        return str(policy.why)
    names = ", ".join(str(r) for r in policy.refs)
    return f"{policy.why}: {names}" if policy.why is Why.RULES else f"{policy.why}; rules: {names}"


def explain_identity(
    resolved: ResolvedPolicy,
    cache: SelectorCache,
    *,
    remote_identity: int,
    proto: int,
    port: int,
    direction: Direction,
) -> Explanation:
    """:func:`explain` for a known identity, its labels taken from the selector cache."""
    return explain(
        resolved,
        remote_identity=remote_identity,
        remote_labels=cache.labels_of(remote_identity) or frozenset(),
        proto=proto,
        port=port,
        direction=direction,
    )
