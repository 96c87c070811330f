"""L5: the agent's policy engine: from the store's policies, identities and pods to every local
endpoint's policy map, recomputed when any input changes and written as a diff, so flows that
stay allowed are never disturbed and flows that become denied stop at their next packet.

Also owns the CIDR identities (node-local numbers for the prefixes policy names), which the
endpoint manager puts into the ipcache, and the datapath's audit-mode flag.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass

from pylium.adapters.maps import config as config_map
from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.resources import ResourceClient
from pylium.core.hubble.flow import Decided, PolicyRef
from pylium.core.policy import cidr
from pylium.core.policy.explain import DropReason, explain_identity
from pylium.core.policy.mapstate import MapState, compute_map_state
from pylium.core.policy.peers import Direction
from pylium.core.policy.resolve import PolicyConfig, ResolvedPolicy, Subject
from pylium.core.policy.selectorcache import SelectorCache, reserved_identities
from pylium.runtime import policy as cluster_policy

log = logging.getLogger(__name__)

ATTRIBUTION_MEMO = 4096


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """What the agent enforces for one endpoint (``pylium endpoint list`` shows it)."""

    endpoint_id: int
    identity: int
    ingress: bool
    egress: bool
    entries: int
    revision: int


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    endpoint_id: int
    identity: int
    labels: frozenset[str]
    namespace: str
    pod: str


class PolicyManager:
    def __init__(self, client: ResourceClient, config: PolicyConfig) -> None:
        self.client = client
        self.config = config
        self.cache = SelectorCache()
        self.cidr_identities: dict[ipaddress.IPv4Network, int] = {}
        self._signature: tuple[object, ...] | None = None
        self._snapshot: cluster_policy.PolicySnapshot | None = None
        self._endpoints_seen: tuple[LocalEndpoint, ...] = ()
        self._enforced: dict[int, EndpointPolicy] = {}
        self._lock = threading.Lock()
        self.maps: policy_maps.PolicyMaps | None = None
        self.revision = 0
        """Every policy input written up to this store revision is in the maps."""
        self._states: dict[int, MapState] = {}
        """What was last written to each endpoint's map (so a change writes only the diff)."""
        self._resolved: dict[int, ResolvedPolicy] = {}
        """Each endpoint's resolved policy, for attributing verdicts to rules (Hubble)."""
        self._attributed: dict[tuple[int, Direction, int, int, int], Decided] = {}
        """Answers of :meth:`attribution` for the current ``_resolved`` (Hubble asks for every
        drop and new connection's verdict, mostly the same few questions)."""

    def attach(self, maps: policy_maps.PolicyMaps, node_config: config_map.ConfigMap) -> None:
        """The datapath is loaded: from now on policy is written into these maps."""
        self.maps = maps
        node_config.set_policy_audit_mode(self.config.audit)
        self._signature = None  # write everything on the next sync

    def status(self) -> dict[int, EndpointPolicy]:
        with self._lock:
            return dict(self._enforced)

    def sync(self, endpoints: list[LocalEndpoint]) -> bool:
        """Recompute when the store's inputs or the local endpoints changed; returns whether
        anything was recomputed."""
        if self.maps is None:
            return False
        snap = cluster_policy.snapshot(self.client, self.config.cluster_name, self._snapshot)
        self._snapshot = snap
        current = tuple(sorted(endpoints, key=lambda e: e.endpoint_id))
        if snap.signature == self._signature and current == self._endpoints_seen:
            self.revision = snap.revision
            return False
        self.cidr_identities = cluster_policy.cidr_identities(snap, self.cidr_identities)
        with self._lock:
            self._attributed = {}  # the cache changes now, the resolved policies below
        self._update_cache(snap)
        repo = snap.repository
        egress_ports = snap.named_ports()
        enforced: dict[int, EndpointPolicy] = {}
        fresh: dict[int, ResolvedPolicy] = {}
        for ep in current:
            resolved = repo.resolve(
                Subject(ep.identity, ep.labels),
                self.config,
                ingress_named_ports=snap.named_ports(ep.namespace, ep.pod),
                egress_named_ports=egress_ports,
            )
            state = compute_map_state(resolved, self.cache)
            fresh[ep.endpoint_id] = resolved
            change = self.maps.write(ep.endpoint_id, state, old=self._states.get(ep.endpoint_id))
            self._states[ep.endpoint_id] = state
            if not change.empty:
                log.info(
                    "endpoint policy updated",
                    extra={
                        "endpoint": ep.endpoint_id,
                        "added": len(change.adds),
                        "removed": len(change.removes),
                        "revision": repo.revision,
                    },
                )
            enforced[ep.endpoint_id] = _summary(ep, resolved, state, repo.revision)
        for stale in set(self.maps.endpoints()) - {ep.endpoint_id for ep in current}:
            self.maps.delete(stale)
        live = {ep.endpoint_id for ep in current}
        resolved_now = {ep: r for ep, r in {**self._resolved, **fresh}.items() if ep in live}
        self._states = {ep: s for ep, s in self._states.items() if ep in live}
        with self._lock:
            self._enforced = enforced
            self._resolved = resolved_now
            self._attributed = {}
        self._signature = snap.signature
        self._endpoints_seen = current
        self.revision = snap.revision
        return True

    def attribution(
        self,
        endpoint_id: int,
        direction: Direction,
        remote_identity: int,
        proto: int,
        port: int,
    ) -> Decided:
        """The policies that allowed / denied a packet of this local endpoint (the explainer
        run on the endpoint's resolved policy): ``(allowed by, denied by)``."""
        key = (endpoint_id, direction, remote_identity, proto, port)
        with self._lock:
            resolved = self._resolved.get(endpoint_id)
            memo = self._attributed
            known = memo.get(key)
        if known is not None:
            return known
        if resolved is None:
            return (), ()
        explanation = explain_identity(
            resolved,
            self.cache,
            remote_identity=remote_identity,
            proto=proto,
            port=port,
            direction=direction,
        )
        # A default deny names no rule: report the policies that switched it on (the rules
        # selecting the endpoint in that direction), so "which policy dropped this" has an answer.
        default_deny = explanation.drop_reason is DropReason.POLICY_DENIED
        deciding = (
            explanation.selecting
            if default_deny
            else tuple(o.ref for o in explanation.matched if o.ref is not None)
        )
        refs = tuple(
            dict.fromkeys(
                PolicyRef(name=r.name, namespace=r.namespace, kind=r.kind) for r in deciding
            )
        )
        answer: Decided = ((), refs) if explanation.drop_reason is not None else (refs, ())
        with self._lock:
            if memo is self._attributed:  # else policy changed meanwhile: not kept
                if len(memo) >= ATTRIBUTION_MEMO:
                    memo.clear()
                memo[key] = answer
        return answer

    def forget(self, endpoint_id: int) -> None:
        """The endpoint is gone: its map goes with it."""
        if self.maps is not None:
            self.maps.delete(endpoint_id)
        with self._lock:
            self._enforced.pop(endpoint_id, None)
        self._endpoints_seen = tuple(
            e for e in self._endpoints_seen if e.endpoint_id != endpoint_id
        )

    def _update_cache(self, snap: cluster_policy.PolicySnapshot) -> None:
        wanted = {**reserved_identities(), **snap.identities}
        wanted.update({ident: cidr.cidr_labels(p) for p, ident in self.cidr_identities.items()})
        known = self.cache.identities
        added = {i: labels for i, labels in wanted.items() if known.get(i) != labels}
        removed = [i for i in known if i not in wanted]
        if added or removed:
            self.cache.update(added, removed)


def _summary(
    ep: LocalEndpoint, resolved: ResolvedPolicy, state: MapState, revision: int
) -> EndpointPolicy:
    return EndpointPolicy(
        endpoint_id=ep.endpoint_id,
        identity=ep.identity,
        ingress=resolved.direction(Direction.INGRESS).enforced,
        egress=resolved.direction(Direction.EGRESS).enforced,
        entries=len(state),
        revision=revision,
    )
