"""L2: desired load-balancer BPF map rows as data, and the ordered plan to reach them.

Row shapes follow Cilium's maps (``bpf/lib/common.h``, ``pkg/loadbalancer/maps``):

* services (``cilium_lb{4,6}_services_v2``): key (frontend IP, port, protocol, scope, slot).
  Slot 0 is the master entry: ``count`` (slots taking new connections), ``qcount`` (slots
  kept for existing flows), ``rev_nat_index``, ``flags``, and in the ``backend_id`` field the
  session-affinity timeout with the per-service LB algorithm in the top 8 bits. Slots 1..n
  carry a backend ID each.
* backends (``cilium_lb{4,6}_backends_v3``): ID -> IP, port, protocol, state flags.
* reverse NAT (``cilium_lb{4,6}_reverse_nat``): rev-NAT ID -> frontend IP and port.
* Maglev (``cilium_lb{4,6}_maglev``): rev-NAT ID -> inner table of M backend IDs.
* affinity match (``cilium_lb_affinity_match``): (rev-NAT ID, backend ID) for active
  backends of services with ClientIP affinity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, IntFlag, StrEnum
from typing import Any

from pylium.core.lb import ids as idalloc
from pylium.core.lb.addr import (
    BackendState,
    IPAddress,
    L3n4Addr,
    Protocol,
    Scope,
    ServiceName,
    SVCType,
    TrafficPolicy,
)
from pylium.core.lb.k8s import Service
from pylium.core.lb.maglev import MaglevBackend, MaglevConfig, backend_hash_string, lookup_table
from pylium.core.lb.services import LB_ALGORITHM_ANNOTATION, Selection

LB_ALGORITHM_SHIFT = 24


MaglevTables = dict[int, tuple[tuple[tuple[MaglevBackend, ...], MaglevConfig], tuple[int, ...]]]
"""Per reverse-NAT index: the Maglev inputs (backends, configuration) and the table built."""


class ServiceFlag(IntFlag):
    """``lb{4,6}_service.flags`` (u16; flags and flags2 in the C struct)."""

    EXTERNAL_IPS = 1 << 0
    NODE_PORT = 1 << 1
    EXT_LOCAL_SCOPE = 1 << 2
    HOST_PORT = 1 << 3
    SESSION_AFFINITY = 1 << 4
    LOAD_BALANCER = 1 << 5
    ROUTABLE = 1 << 6
    SOURCE_RANGE = 1 << 7
    LOCAL_REDIRECT = 1 << 8
    NAT_46X64 = 1 << 9
    L7_LOAD_BALANCER = 1 << 10
    LOOPBACK = 1 << 11
    INT_LOCAL_SCOPE = 1 << 12
    TWO_SCOPES = 1 << 13
    QUARANTINED = 1 << 14
    FWD_MODE_DSR = 1 << 15


_TYPE_FLAG = {
    SVCType.EXTERNAL_IPS: ServiceFlag.EXTERNAL_IPS,
    SVCType.NODE_PORT: ServiceFlag.NODE_PORT,
    SVCType.LOAD_BALANCER: ServiceFlag.LOAD_BALANCER,
    SVCType.HOST_PORT: ServiceFlag.HOST_PORT,
    SVCType.LOCAL_REDIRECT: ServiceFlag.LOCAL_REDIRECT,
}


def flag_type(flags: int) -> SVCType:
    """The service type a flags word encodes (``ServiceFlags.SVCType``)."""
    for typ, flag in _TYPE_FLAG.items():
        if flags & flag:
            return typ
    return SVCType.CLUSTER_IP


class LBAlgorithm(IntEnum):
    UNDEF = 0
    RANDOM = 1
    MAGLEV = 2


@dataclass(frozen=True, slots=True)
class ServiceKey:
    address: IPAddress
    port: int
    protocol: Protocol
    scope: Scope = Scope.EXTERNAL
    slot: int = 0

    def __hash__(self) -> int:
        # As L3n4Addr's: not through the address's own (slow) hash.
        return hash((int(self.address), self.port, self.protocol, self.scope, self.slot))

    @property
    def frontend(self) -> L3n4Addr:
        return L3n4Addr(self.address, self.port, self.protocol, self.scope)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceValue:
    backend_id: int = 0
    count: int = 0
    qcount: int = 0
    rev_nat_index: int
    flags: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendValue:
    address: L3n4Addr
    state: BackendState = BackendState.ACTIVE

    @property
    def flags(self) -> int:
        return self.state.datapath_flags


@dataclass(frozen=True, slots=True, kw_only=True)
class Rows:
    """Everything the load-balancer maps should hold, keyed like the maps."""

    services: Mapping[ServiceKey, ServiceValue] = field(default_factory=dict)
    backends: Mapping[int, BackendValue] = field(default_factory=dict)
    rev_nat: Mapping[int, L3n4Addr] = field(default_factory=dict)
    maglev: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    affinity: frozenset[tuple[int, int]] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class LBSettings:
    """The agent settings translation needs (``bpf-lb-*``)."""

    algorithm: LBAlgorithm = LBAlgorithm.RANDOM
    """``bpf-lb-algorithm``."""
    maglev: MaglevConfig | None = None
    """Required when any frontend uses Maglev."""
    algorithm_annotation: bool = False
    """``bpf-lb-algorithm-annotation``: honour ``service.cilium.io/lb-algorithm``."""
    external_cluster_ip: bool = False
    """``bpf-lb-external-clusterip``."""
    dsr: bool = False
    """``bpf-lb-mode`` dsr (hybrid: DSR for TCP only, decided by the caller)."""


def annotated_algorithm(service: Service | None, settings: LBSettings) -> LBAlgorithm:
    if service is None or not settings.algorithm_annotation:
        return LBAlgorithm.UNDEF
    value = service.annotations.get(LB_ALGORITHM_ANNOTATION, "")
    return {"random": LBAlgorithm.RANDOM, "maglev": LBAlgorithm.MAGLEV}.get(
        value, LBAlgorithm.UNDEF
    )


def service_flags(service: Service | None, sel: Selection, settings: LBSettings) -> int:
    """``NewSvcFlag``: type, traffic-policy scopes, affinity, routability, DSR."""
    fe = sel.frontend
    flags = _TYPE_FLAG.get(fe.type, ServiceFlag(0))
    if service is not None:
        ext_local = service.external_traffic_policy is TrafficPolicy.LOCAL
        int_local = service.internal_traffic_policy is TrafficPolicy.LOCAL
        if ext_local:
            flags |= ServiceFlag.EXT_LOCAL_SCOPE
        if int_local:
            flags |= ServiceFlag.INT_LOCAL_SCOPE
        if ext_local != int_local and fe.type is not SVCType.CLUSTER_IP:
            flags |= ServiceFlag.TWO_SCOPES
        if service.session_affinity:
            flags |= ServiceFlag.SESSION_AFFINITY
    if not fe.address.is_surrogate and (
        fe.type is not SVCType.CLUSTER_IP or settings.external_cluster_ip
    ):
        flags |= ServiceFlag.ROUTABLE
    if settings.dsr and fe.type is not SVCType.CLUSTER_IP:
        flags |= ServiceFlag.FWD_MODE_DSR
    return int(flags)


def uses_maglev(service: Service | None, sel: Selection, settings: LBSettings) -> bool:
    """Upstream's ``useMaglev``: only frontends reachable from outside the node."""
    fe = sel.frontend
    alg = annotated_algorithm(service, settings)
    if fe.address.is_surrogate:
        return False
    if alg is not LBAlgorithm.UNDEF:
        return alg is LBAlgorithm.MAGLEV
    if settings.algorithm is not LBAlgorithm.MAGLEV:
        return False
    if fe.type is SVCType.CLUSTER_IP:
        return settings.external_cluster_ip
    return fe.type in (
        SVCType.NODE_PORT,
        SVCType.LOAD_BALANCER,
        SVCType.HOST_PORT,
        SVCType.EXTERNAL_IPS,
    )


def translate(
    selections: Iterable[Selection],
    services: Mapping[Any, Service],
    settings: LBSettings,
    *,
    service_ids: idalloc.IDAllocator,
    backend_ids: idalloc.IDAllocator,
    maglev_tables: MaglevTables | None = None,
) -> Rows:
    """Rows for every selection; IDs come from (and are kept in) the two allocators.

    ``services`` maps each selection's ``frontend.service`` to its Service (HostPort
    frontends have none). IDs of frontends and backends that are gone are released.
    ``maglev_tables``, kept by the caller between calls, holds each frontend's last table
    with the backends it was built from, so that an unchanged service's table is not rebuilt.
    The same rows as :class:`RowBuilder` fed every owner at once (it is what runs).
    """
    builder = RowBuilder(
        settings, service_ids=service_ids, backend_ids=backend_ids, maglev_tables=maglev_tables
    )
    owned: dict[ServiceName, list[Selection]] = {}
    for sel in selections:
        owned.setdefault(sel.frontend.service, []).append(sel)
    for owner, sels in owned.items():
        builder.set_owner(owner, sels, services.get(owner))
    builder.commit()
    rows = builder.rows()
    service_ids.retain(str(fe) for fe in builder.frontends())
    backend_ids.retain(str(v.address) for v in rows.backends.values())
    if maglev_tables is not None:
        for rev in [r for r in maglev_tables if r not in rows.maglev]:
            del maglev_tables[rev]
    return rows


@dataclass(frozen=True, slots=True)
class _Fragment:
    """One frontend's rows: master and slots, the backends they name, its reverse NAT,
    Maglev table and affinity matches."""

    rev: int
    services: dict[ServiceKey, ServiceValue]
    backends: dict[int, BackendValue]
    rev_nat: L3n4Addr
    maglev: tuple[int, ...] | None
    affinity: frozenset[tuple[int, int]]


_Claim = tuple[Selection, Service | None]


class RowBuilder:
    """The rows of every frontend, kept up to date one owner (Service, or a pod's HostPorts)
    at a time: :meth:`set_owner` / :meth:`remove_owner` say what changed, :meth:`commit`
    re-translates only the frontends they touched and returns the plan for the map entries
    that changed, so the cost of a change does not grow with the number of services.

    A frontend claimed by several owners (a misconfiguration) is served by one of them:
    Services before HostPorts, then the smallest namespace/name; the others' selections for
    it are kept and take over when it goes. A backend row shared by frontends takes its
    state from the frontend with the highest address. IDs are acquired in frontend address
    order within a commit and released at its end, so a frontend or backend that only moves
    between owners keeps its ID; :func:`translate` is this builder fed everything at once.
    """

    def __init__(
        self,
        settings: LBSettings,
        *,
        service_ids: idalloc.IDAllocator,
        backend_ids: idalloc.IDAllocator,
        maglev_tables: MaglevTables | None = None,
        baseline: Rows | None = None,
    ) -> None:
        """``baseline``: what the maps hold already (read back after a restart); the first
        commit plans from it, so entries of services gone meanwhile are deleted."""
        self.settings = settings
        self.service_ids = service_ids
        self.backend_ids = backend_ids
        self._maglev_tables: MaglevTables = maglev_tables if maglev_tables is not None else {}
        self._baseline = baseline
        self._claims: dict[L3n4Addr, dict[tuple[bool, ServiceName], _Claim]] = {}
        self._owned: dict[ServiceName, tuple[tuple[tuple[bool, ServiceName], L3n4Addr], ...]] = {}
        self._active: dict[L3n4Addr, tuple[_Claim, _Fragment]] = {}
        self._dirty: set[L3n4Addr] = set()
        self.services: dict[ServiceKey, ServiceValue] = {}
        self.backends: dict[int, BackendValue] = {}
        self.rev_nat: dict[int, L3n4Addr] = {}
        self.maglev: dict[int, tuple[int, ...]] = {}
        self.affinity: set[tuple[int, int]] = set()
        self._backend_users: dict[int, dict[L3n4Addr, BackendValue]] = {}
        """Each backend's frontends, with the row each would give it."""
        self._backend_top: dict[int, L3n4Addr] = {}
        """The frontend with the highest address among each backend's: its row is written."""

    # -- what changed -----------------------------------------------------------------------

    def set_owner(
        self, owner: ServiceName, selections: Iterable[Selection], service: Service | None
    ) -> None:
        """Everything ``owner`` claims now (replacing what it claimed before)."""
        self.remove_owner(owner)
        claimed = []
        for sel in selections:
            fe = sel.frontend.address
            rank = (sel.frontend.type is SVCType.HOST_PORT, owner)
            self._claims.setdefault(fe, {})[rank] = (sel, service)
            self._dirty.add(fe)
            claimed.append((rank, fe))
        if claimed:
            self._owned[owner] = tuple(claimed)

    def remove_owner(self, owner: ServiceName) -> None:
        for rank, fe in self._owned.pop(owner, ()):
            claims = self._claims.get(fe)
            if claims is not None:
                claims.pop(rank, None)
                if not claims:
                    del self._claims[fe]
            self._dirty.add(fe)

    def owners(self) -> set[ServiceName]:
        return set(self._owned)

    def frontends(self) -> list[L3n4Addr]:
        """The frontends with rows (as of the last commit)."""
        return list(self._active)

    def __len__(self) -> int:
        """How many frontends have rows."""
        return len(self._active)

    # -- translation ------------------------------------------------------------------------

    def commit(self) -> tuple[tuple[Op, ...], tuple[Op, ...]]:
        """Re-translate the frontends touched since the last commit; the plan (upserts,
        deletes, as :func:`plan`) from the rows before to the rows now."""
        dirty = sorted(self._dirty, key=lambda a: a.sort_key())
        self._dirty = set()
        old: list[tuple[L3n4Addr, _Fragment]] = []
        for fe in dirty:
            claims = self._claims.get(fe)
            current = self._active.get(fe)
            if current is None:
                continue
            if claims and _same_claim(current[0], claims[min(claims)]):
                continue
            old.append((fe, current[1]))
            del self._active[fe]
            self._drop(fe, current[1])
        new: list[_Fragment] = []
        added: dict[int, list[L3n4Addr]] = {}
        for fe in dirty:
            claims = self._claims.get(fe)
            if claims and fe not in self._active:
                chosen = claims[min(claims)]
                fragment = self._fragment(*chosen)
                self._add(fe, fragment)
                for bid in fragment.backends:
                    added.setdefault(bid, []).append(fe)
                self._active[fe] = (chosen, fragment)
                new.append(fragment)
        before = _union(frag for _, frag in old)
        after = _union(new)
        bids = before.backends.keys() | after.backends.keys()
        before_backends: dict[int, BackendValue] = {}
        after_backends: dict[int, BackendValue] = {}
        for bid in bids:
            was = self.backends.get(bid)
            if was is not None:
                before_backends[bid] = was
            users = self._backend_users.get(bid)
            if users:
                top = self._backend_top.get(bid)
                if top is None or top not in users:  # the top one left: look at them all
                    top = max(users, key=lambda a: a.sort_key())
                else:
                    for fe in added.get(bid, ()):
                        if fe.sort_key() > top.sort_key():
                            top = fe
                self._backend_top[bid] = top
                self.backends[bid] = after_backends[bid] = users[top]
            else:
                self._backend_users.pop(bid, None)
                self._backend_top.pop(bid, None)
                if was is not None:
                    del self.backends[bid]
                    self.backend_ids.release(str(was.address))
        for fe, frag in old:
            if fe not in self._active:
                self.service_ids.release(str(fe))
            if frag.maglev is not None and frag.rev not in self.maglev:
                self._maglev_tables.pop(frag.rev, None)
        if self._baseline is not None:
            baseline, self._baseline = self._baseline, None
            return plan(baseline, self.rows())
        return plan(
            replace(before, backends=before_backends), replace(after, backends=after_backends)
        )

    def rows(self) -> Rows:
        """A copy of every row (as of the last commit)."""
        return Rows(
            services=dict(self.services),
            backends=dict(self.backends),
            rev_nat=dict(self.rev_nat),
            maglev=dict(self.maglev),
            affinity=frozenset(self.affinity),
        )

    def _add(self, fe: L3n4Addr, frag: _Fragment) -> None:
        self.services.update(frag.services)
        for bid, be in frag.backends.items():
            users = self._backend_users.get(bid)
            if users is None:
                self._backend_users[bid] = {fe: be}
            else:
                users[fe] = be
        self.rev_nat[frag.rev] = frag.rev_nat
        if frag.maglev is not None:
            self.maglev[frag.rev] = frag.maglev
        self.affinity |= frag.affinity

    def _drop(self, fe: L3n4Addr, frag: _Fragment) -> None:
        for key in frag.services:
            self.services.pop(key, None)
        for bid in frag.backends:
            users = self._backend_users.get(bid)
            if users is not None:
                users.pop(fe, None)
        self.rev_nat.pop(frag.rev, None)
        if frag.maglev is not None:
            self.maglev.pop(frag.rev, None)
        self.affinity -= frag.affinity

    def _fragment(self, sel: Selection, service: Service | None) -> _Fragment:
        settings = self.settings
        fe = sel.frontend.address
        acquire = self.backend_ids.acquire
        rev = self.service_ids.acquire(str(fe))
        flags = service_flags(service, sel, settings)
        services: dict[ServiceKey, ServiceValue] = {}
        backends: dict[int, BackendValue] = {}
        affinity: set[tuple[int, int]] = set()
        sticky = service is not None and service.session_affinity
        for slot, be in enumerate(sel.slots, start=1):
            bid = acquire(str(be.address))
            backends[bid] = BackendValue(address=be.address, state=be.state)
            services[ServiceKey(fe.address, fe.port, fe.protocol, fe.scope, slot)] = ServiceValue(
                backend_id=bid, rev_nat_index=rev, flags=flags
            )
            if sticky and be.state is BackendState.ACTIVE:
                affinity.add((rev, bid))
        for be in sel.maintenance:
            bid = acquire(str(be.address))
            backends[bid] = BackendValue(address=be.address, state=be.state)
        alg = annotated_algorithm(service, settings)
        timeout = service.affinity_timeout if service and service.session_affinity else 0
        services[ServiceKey(fe.address, fe.port, fe.protocol, fe.scope)] = ServiceValue(
            backend_id=timeout | (alg << LB_ALGORITHM_SHIFT),
            count=sel.count,
            qcount=sel.qcount,
            rev_nat_index=rev,
            flags=flags,
        )
        table = None
        if sel.count and uses_maglev(service, sel, settings):
            if settings.maglev is None:
                raise ValueError("LBSettings.maglev is required when Maglev is used")
            members = tuple(
                MaglevBackend(
                    id=acquire(str(b.address)),
                    hash_string=backend_hash_string(
                        b.address.address, b.address.port, b.address.protocol
                    ),
                    weight=b.weight,
                )
                for b in sel.selectable
            )
            inputs = (members, settings.maglev)
            known = self._maglev_tables.get(rev)
            if known is not None and known[0] == inputs:
                table = known[1]
            else:
                table = lookup_table(list(members), settings.maglev)
                self._maglev_tables[rev] = (inputs, table)
        return _Fragment(
            rev=rev,
            services=services,
            backends=backends,
            rev_nat=L3n4Addr(fe.address, fe.port, fe.protocol),
            maglev=table,
            affinity=frozenset(affinity),
        )


def _same_claim(a: _Claim, b: _Claim) -> bool:
    return (a[0] is b[0] or a[0] == b[0]) and (a[1] is b[1] or a[1] == b[1])


def _union(fragments: Iterable[_Fragment]) -> Rows:
    """The rows of several frontends (backends: each one's own view)."""
    services: dict[ServiceKey, ServiceValue] = {}
    backends: dict[int, BackendValue] = {}
    rev_nat: dict[int, L3n4Addr] = {}
    maglev: dict[int, tuple[int, ...]] = {}
    affinity: set[tuple[int, int]] = set()
    for frag in fragments:
        services.update(frag.services)
        backends.update(frag.backends)
        rev_nat[frag.rev] = frag.rev_nat
        if frag.maglev is not None:
            maglev[frag.rev] = frag.maglev
        affinity |= frag.affinity
    return Rows(
        services=services,
        backends=backends,
        rev_nat=rev_nat,
        maglev=maglev,
        affinity=frozenset(affinity),
    )


class MapKind(StrEnum):
    """Which map an operation touches; map names are per family (see :func:`map_name`)."""

    BACKEND = "backends_v3"
    REV_NAT = "reverse_nat"
    MAGLEV = "maglev"
    AFFINITY_MATCH = "affinity_match"
    SERVICE = "services_v2"


def map_name(kind: MapKind, ipv6: bool) -> str:
    if kind is MapKind.AFFINITY_MATCH:
        return "cilium_lb_affinity_match"
    return f"cilium_lb{6 if ipv6 else 4}_{kind}"


@dataclass(frozen=True, slots=True)
class Op:
    """Upsert (``value`` set) or delete (``value`` None) one map entry."""

    kind: MapKind
    key: Any
    value: Any = None


def _table_ops(
    kind: MapKind, old: Mapping[Any, Any], new: Mapping[Any, Any]
) -> tuple[list[Op], list[Op]]:
    ups = [Op(kind, k, v) for k, v in new.items() if old.get(k) != v]
    dels = [Op(kind, k) for k in old if k not in new]
    return ups, dels


def plan(old: Rows, new: Rows) -> tuple[tuple[Op, ...], tuple[Op, ...]]:
    """What to write, then what to delete, to go from ``old`` to ``new``; apply in order.

    Upserts go backends, reverse NAT, Maglev, affinity, service slots, and master entries
    last, so a slot or table never names a backend that is not there yet and a master never
    counts slots that do not exist. Deletes go the other way: masters (of removed
    frontends), slots, affinity, Maglev, reverse NAT, and backends last, after nothing
    points at them. A master whose count shrinks is rewritten before its surplus slots go.
    """
    b_up, b_del = _table_ops(MapKind.BACKEND, old.backends, new.backends)
    r_up, r_del = _table_ops(MapKind.REV_NAT, old.rev_nat, new.rev_nat)
    m_up, m_del = _table_ops(MapKind.MAGLEV, old.maglev, new.maglev)
    a_old = dict.fromkeys(old.affinity, True)
    a_new = dict.fromkeys(new.affinity, True)
    a_up, a_del = _table_ops(MapKind.AFFINITY_MATCH, a_old, a_new)
    s_up, s_del = _table_ops(MapKind.SERVICE, old.services, new.services)

    def by_slot(op: Op) -> tuple[int, tuple[int, int, int, str, int], int]:
        key: ServiceKey = op.key
        return (0 if key.slot else 1, key.frontend.sort_key(), key.slot)

    s_up.sort(key=by_slot)
    s_del.sort(key=lambda op: (1 - by_slot(op)[0], by_slot(op)[1], -op.key.slot))
    upserts = (*b_up, *r_up, *m_up, *a_up, *s_up)
    deletes = (*s_del, *a_del, *m_del, *r_del, *b_del)
    return upserts, deletes
