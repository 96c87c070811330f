"""L4: the cluster's policy state read from the store, for the agent (which turns it into
policy maps) and the CLI (which explains verdicts with the same code): the policy objects of
the three kinds as a :class:`~pylium.core.policy.repository.Repository`, the identities with
their labels, the CIDR identities policy needs, and the pods' named ports."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pylium.adapters.resources import ResourceClient
from pylium.core.policy import cidr
from pylium.core.policy.explain import Explanation, explain
from pylium.core.policy.peers import Direction, NamedPorts, port_proto
from pylium.core.policy.repository import Repository, load_objects
from pylium.core.policy.resolve import EnforcementMode, PolicyConfig, Subject
from pylium.model.config import AgentSettings
from pylium.model.policy import CCNP, CNP, KNP
from pylium.model.resource import Resource, ResourceKey
from pylium.model.views import Pod, view

POLICY_KINDS = (CNP, CCNP, KNP)
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


def policy_config(settings: AgentSettings) -> PolicyConfig:
    return PolicyConfig(
        mode=EnforcementMode(settings.enable_policy.value),
        audit=settings.policy_audit_mode,
        host_firewall=settings.enable_host_firewall,
        cluster_name=settings.cluster_name,
    )


def identity_labels(resource: Resource) -> frozenset[str]:
    """A CiliumIdentity's labels as ``source:key=value`` strings."""
    security = resource.body.get("security-labels") or {}
    return frozenset(f"{key}={value}" for key, value in security.items())


@dataclass
class PolicySnapshot:
    """What policy is computed from, at one moment; ``signature`` changes whenever any input
    changes (resource versions), so an unchanged snapshot needs no recomputation."""

    repository: Repository
    identities: dict[int, frozenset[str]]
    prefixes: frozenset[ipaddress.IPv4Network]
    pods: dict[tuple[str, str], Pod]
    signature: tuple[object, ...] = field(default=())
    revision: int = 0
    """The store revision the snapshot reflects at least (everything written up to it)."""
    policy_versions: tuple[tuple[str, str, str, str], ...] = ()
    """(kind, namespace, name, resourceVersion) of the policy objects in the repository."""

    def named_ports(self, namespace: str | None = None, pod: str | None = None) -> NamedPorts:
        """One pod's named ports (ingress), or every pod's (egress) without arguments."""
        chosen = (
            [self.pods[(namespace, pod)]]
            if namespace is not None and pod is not None and (namespace, pod) in self.pods
            else []
            if namespace is not None
            else list(self.pods.values())
        )
        out: dict[str, set[tuple[int, int]]] = {}
        for p in chosen:
            for name, port in p.named_ports.items():
                out.setdefault(name, set()).add((PROTOCOLS.get(port.protocol, 6), port.port))
        return {name: frozenset(v) for name, v in out.items()}


def _versions(resources: list[Resource]) -> tuple[tuple[str, str, str, str], ...]:
    return tuple(
        sorted(
            (r.kind, r.namespace, r.name, str(r.metadata.get("resourceVersion", "")))
            for r in resources
        )
    )


def _update(
    repository: Repository,
    objects: list[Resource],
    before: tuple[tuple[str, ...], ...],
    cluster: str,
) -> Repository:
    """Bring ``repository`` (which held the objects at versions ``before``) to ``objects``:
    only new, changed and deleted objects are parsed or dropped."""
    old = {(kind, ns, name): rv for kind, ns, name, rv in before}
    now = {(r.kind, r.namespace, r.name): r for r in objects}
    for key, resource in now.items():
        if old.get(key) != str(resource.metadata.get("resourceVersion", "")):
            repository.apply_object(resource.body, cluster=cluster)
    for kind, ns, name in set(old) - set(now):
        repository.delete(ResourceKey(kind, ns, name))
    return repository


def snapshot(
    client: ResourceClient, cluster: str, previous: PolicySnapshot | None = None
) -> PolicySnapshot:
    """The policy inputs now; with ``previous`` (whose repository is then updated in place,
    so the caller must not use it any more) only changed policy objects are parsed again."""
    listings = [client.list(kind) for kind in POLICY_KINDS]
    objects = [r for items, _ in listings for r in items]
    identities_res, identities_rev = client.list("CiliumIdentity")
    pods_res, pods_rev = client.list("Pod")
    if previous is not None:
        repository = _update(previous.repository, objects, previous.policy_versions, cluster)
    else:
        repository = load_objects((r.body for r in objects), cluster=cluster)
    return PolicySnapshot(
        repository=repository,
        identities={int(r.name): identity_labels(r) for r in identities_res},
        prefixes=cidr.policy_prefixes(repository.rules(), cluster),
        pods={(r.namespace, r.name): view(r, Pod) for r in pods_res},
        policy_versions=_versions(objects),
        signature=(
            _versions(objects),
            _versions(identities_res),
            _versions(pods_res),
        ),
        revision=min([rev for _, rev in listings] + [identities_rev, pods_rev]),
    )


def cidr_identities(
    snap: PolicySnapshot, previous: Mapping[ipaddress.IPv4Network, int] = {}
) -> dict[ipaddress.IPv4Network, int]:
    return cidr.assign(snap.prefixes, previous)


@dataclass(frozen=True, slots=True)
class Peer:
    """One end of a connection being explained: an endpoint (pod) or an outside address."""

    name: str
    identity: int
    labels: frozenset[str]
    namespace: str | None = None
    pod: str | None = None
    """Set for endpoints: their own policy applies to the connection too."""


@dataclass(frozen=True, slots=True)
class PathExplanation:
    """A connection's verdict: the source endpoint's egress, then the destination's ingress
    (the datapath checks them in that order; the first denial decides)."""

    source: Peer
    destination: Peer
    proto: int
    port: int
    steps: tuple[tuple[str, Explanation], ...]

    @property
    def allowed(self) -> bool:
        return all(e.allowed for _, e in self.steps)

    def render(self) -> str:
        lines = [
            f"Traffic: {self.source.name} (identity {self.source.identity}) -> "
            f"{self.destination.name} (identity {self.destination.identity}), "
            f"{port_proto(self.proto, self.port, self.port) if self.proto else 'any protocol'}"
        ]
        for where, explanation in self.steps:
            lines.append("")
            lines.append(f"{where}:")
            lines.extend("  " + line for line in explanation.render().splitlines())
        denied = next(((w, e) for w, e in self.steps if not e.allowed), None)
        lines.append("")
        if denied is None:
            lines.append("Final verdict: ALLOWED")
        else:
            reason = denied[1].drop_reason
            lines.append(
                f"Final verdict: DENIED at {denied[0]}"
                + (f" (drop reason {int(reason)}: {reason.text})" if reason else "")
            )
        return "\n".join(lines)


def explain_path(
    snap: PolicySnapshot,
    config: PolicyConfig,
    source: Peer,
    destination: Peer,
    proto: int,
    port: int,
) -> PathExplanation:
    steps: list[tuple[str, Explanation]] = []
    for local, remote, direction in (
        (source, destination, Direction.EGRESS),
        (destination, source, Direction.INGRESS),
    ):
        if local.namespace is None:
            continue  # an outside address has no policy of its own
        resolved = snap.repository.resolve(
            Subject(local.identity, local.labels),
            config,
            ingress_named_ports=snap.named_ports(local.namespace, local.pod),
            egress_named_ports=snap.named_ports(),
        )
        explanation = explain(
            resolved,
            remote_identity=remote.identity,
            remote_labels=remote.labels,
            proto=proto,
            port=port,
            direction=direction,
        )
        steps.append((f"{direction} of {local.name}", explanation))
    return PathExplanation(source, destination, proto, port, tuple(steps))
