"""Map rows from selections, stable IDs, the ordered plan, and ``service list`` output."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.core.lb.addr import BackendState, L3n4Addr, Protocol, Scope, ServiceName, SVCType
from pylium.core.lb.ids import backend_ids, service_ids
from pylium.core.lb.k8s import Service, parse_endpoint_slice, parse_service
from pylium.core.lb.listing import format_service_list
from pylium.core.lb.maglev import maglev_config
from pylium.core.lb.services import Selection, backends, frontends, hostport_frontends, select
from pylium.core.lb.translate import (
    LBAlgorithm,
    LBSettings,
    MaglevTables,
    MapKind,
    Op,
    RowBuilder,
    Rows,
    ServiceFlag,
    ServiceKey,
    plan,
    translate,
)

NODE = "node-a"
NODE_IPS = (ipaddress.ip_address("192.168.1.10"),)


def service_doc(name: str, cluster_ip: str, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    return {
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80, "nodePort": 30080}], **spec},
    }


def slice_doc(name: str, *ips: str, states: dict[str, dict[str, bool]] | None = None) -> Any:
    return parse_endpoint_slice(
        {
            "metadata": {
                "name": f"{name}-x",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": name},
            },
            "ports": [{"port": 8080}],
            "endpoints": [
                {"addresses": [ip], "nodeName": NODE, "conditions": (states or {}).get(ip, {})}
                for ip in ips
            ],
        }
    )


def selections(svc: Service, ips: tuple[str, ...], **kw: Any) -> list[Selection]:
    bes = backends(svc, [slice_doc(svc.name.name, *ips, **kw)])
    return [select(svc, fe, bes, node_name=NODE) for fe in frontends(svc, node_addresses=NODE_IPS)]


def test_nodeport_rows() -> None:
    svc = parse_service(service_doc("web", "10.96.1.1", type="NodePort"))
    sids, bids = service_ids(), backend_ids()
    rows = translate(
        selections(svc, ("10.0.0.1", "10.0.0.2")),
        {svc.name: svc},
        LBSettings(),
        service_ids=sids,
        backend_ids=bids,
    )
    ip = ipaddress.ip_address
    # Frontends get IDs in address order: 0.0.0.0, 10.96.1.1, 192.168.1.10.
    surrogate = rows.services[ServiceKey(ip("0.0.0.0"), 30080, Protocol.TCP)]
    cluster = rows.services[ServiceKey(ip("10.96.1.1"), 80, Protocol.TCP)]
    node = rows.services[ServiceKey(ip("192.168.1.10"), 30080, Protocol.TCP)]
    assert (surrogate.rev_nat_index, cluster.rev_nat_index, node.rev_nat_index) == (1, 2, 3)
    assert cluster.flags == 0  # ClusterIP, not routable
    assert surrogate.flags == ServiceFlag.NODE_PORT  # surrogate: not routable
    assert node.flags == ServiceFlag.NODE_PORT | ServiceFlag.ROUTABLE
    assert (node.count, node.qcount, node.backend_id) == (2, 0, 0)
    slot1 = rows.services[ServiceKey(ip("192.168.1.10"), 30080, Protocol.TCP, Scope.EXTERNAL, 1)]
    assert rows.backends[slot1.backend_id].address == L3n4Addr(ip("10.0.0.1"), 8080)
    assert rows.rev_nat[3] == L3n4Addr(ip("192.168.1.10"), 30080)
    assert sorted(rows.backends) == [1, 2]
    assert rows.maglev == {}  # random by default


def test_flags_affinity_and_algorithm_in_master() -> None:
    doc = service_doc(
        "web",
        "10.96.1.1",
        type="NodePort",
        externalTrafficPolicy="Local",
        sessionAffinity="ClientIP",
        annotations={"service.cilium.io/lb-algorithm": "maglev"},
    )
    svc = parse_service(doc)
    settings_ = LBSettings(algorithm_annotation=True, maglev=maglev_config(251))
    rows = translate(
        selections(svc, ("10.0.0.1",)),
        {svc.name: svc},
        settings_,
        service_ids=service_ids(),
        backend_ids=backend_ids(),
    )
    key = ServiceKey(ipaddress.ip_address("192.168.1.10"), 30080, Protocol.TCP)
    master = rows.services[key]
    want = (
        ServiceFlag.NODE_PORT
        | ServiceFlag.ROUTABLE
        | ServiceFlag.EXT_LOCAL_SCOPE
        | ServiceFlag.TWO_SCOPES
        | ServiceFlag.SESSION_AFFINITY
    )
    assert master.flags == want
    assert master.backend_id == 10800 | (LBAlgorithm.MAGLEV << 24)
    assert (master.rev_nat_index, 1) in rows.affinity
    # The annotation overrides the type rule (upstream's useMaglev): every frontend but the
    # surrogate gets a table, ClusterIP included; both scopes of the node address.
    tabled = sorted(str(rows.rev_nat[r]) for r in rows.maglev)
    assert tabled == ["10.96.1.1:80/TCP", "192.168.1.10:30080/TCP", "192.168.1.10:30080/TCP"]
    assert set(rows.maglev[master.rev_nat_index]) == {1}


def test_maglev_setting_covers_external_frontends() -> None:
    svc = parse_service(service_doc("web", "10.96.1.1", type="NodePort"))
    rows = translate(
        selections(svc, ("10.0.0.1", "10.0.0.2")),
        {svc.name: svc},
        LBSettings(algorithm=LBAlgorithm.MAGLEV, maglev=maglev_config(251)),
        service_ids=service_ids(),
        backend_ids=backend_ids(),
    )
    (table,) = rows.maglev.values()
    assert len(table) == 251 and set(table) == {1, 2}


def test_maglev_tables_are_reused_while_backends_stay_and_rebuilt_when_they_change() -> None:
    settings_ = LBSettings(algorithm=LBAlgorithm.MAGLEV, maglev=maglev_config(251))
    sids, bids = service_ids(), backend_ids()
    cache: MaglevTables = {}
    svc = parse_service(service_doc("web", "10.96.1.1", type="NodePort"))

    def rows_with(*ips: str, tables: MaglevTables | None = cache) -> Rows:
        return translate(
            selections(svc, ips),
            {svc.name: svc},
            settings_,
            service_ids=sids,
            backend_ids=bids,
            maglev_tables=tables,
        )

    first = rows_with("10.0.0.1", "10.0.0.2")
    assert first.maglev and set(cache) == set(first.maglev)
    again = rows_with("10.0.0.1", "10.0.0.2")
    assert all(again.maglev[r] is first.maglev[r] for r in first.maglev)  # not rebuilt
    changed = rows_with("10.0.0.1", "10.0.0.3")
    assert all(changed.maglev[r] is not first.maglev[r] for r in first.maglev)
    # What the cache hands out is what building afresh gives.
    assert changed.maglev == rows_with("10.0.0.1", "10.0.0.3", tables=None).maglev
    rows_with()  # no backend: no table, and the cache forgets the frontends
    assert cache == {}


def test_ids_are_stable_and_not_reused_at_once() -> None:
    svc = parse_service(service_doc("web", "10.96.1.1"))
    sids, bids = service_ids(), backend_ids()

    def run(*ips: str) -> dict[str, int]:
        rows = translate(
            selections(svc, ips), {svc.name: svc}, LBSettings(), service_ids=sids, backend_ids=bids
        )
        return {str(v.address.address): k for k, v in rows.backends.items()}

    assert run("10.0.0.1", "10.0.0.2", "10.0.0.3") == {"10.0.0.1": 1, "10.0.0.2": 2, "10.0.0.3": 3}
    assert run("10.0.0.1", "10.0.0.3") == {"10.0.0.1": 1, "10.0.0.3": 3}
    assert run("10.0.0.1", "10.0.0.3", "10.0.0.4") == {"10.0.0.1": 1, "10.0.0.3": 3, "10.0.0.4": 4}
    restored = type(bids).from_dict(bids.to_dict())
    assert restored.ids == bids.ids and restored.next_id == bids.next_id


def test_service_list_format() -> None:
    svc = parse_service(service_doc("web", "10.104.239.135", type="NodePort"))
    states = {"10.217.0.149": {"ready": False, "serving": True, "terminating": True}}
    rows = translate(
        selections(svc, ("10.217.0.107", "10.217.0.149"), states=states),
        {svc.name: svc},
        LBSettings(),
        service_ids=service_ids(),
        backend_ids=backend_ids(),
    )
    assert format_service_list(rows).splitlines() == [
        "ID   Frontend                 Service Type   Backend                                    ",
        "1    0.0.0.0:30080/TCP        NodePort       1 => 10.217.0.107:8080/TCP (active)        ",
        "                                             2 => 10.217.0.149:8080/TCP (terminating)   ",
        "2    10.104.239.135:80/TCP    ClusterIP      1 => 10.217.0.107:8080/TCP (active)        ",
        "                                             2 => 10.217.0.149:8080/TCP (terminating)   ",
        "3    192.168.1.10:30080/TCP   NodePort       1 => 10.217.0.107:8080/TCP (active)        ",
        "                                             2 => 10.217.0.149:8080/TCP (terminating)   ",
    ]


# --- the plan never lets the datapath see a dangling reference --------------------------------

STATES = [s.value for s in BackendState]
backend_sets = st.dictionaries(
    st.sampled_from([f"10.0.0.{i}" for i in range(1, 9)]),
    st.sampled_from(["ready", "terminating", "gone", "not-ready"]),
    max_size=8,
)
service_sets = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.tuples(st.sampled_from(["ClusterIP", "NodePort"]), st.booleans(), backend_sets),
    max_size=3,
)


def rows_for(spec: dict[str, tuple[str, bool, dict[str, str]]], sids: Any, bids: Any) -> Rows:
    conds = {
        "ready": {},
        "terminating": {"ready": False, "serving": True, "terminating": True},
        "gone": {"ready": False, "serving": False, "terminating": True},
        "not-ready": {"ready": False},
    }
    sels: list[Selection] = []
    svcs = {}
    for i, (name, (typ, local, bes)) in enumerate(sorted(spec.items())):
        doc = service_doc(name, f"10.96.0.{i + 10}", type=typ)
        if local:
            doc["spec"]["externalTrafficPolicy"] = "Local"
        svc = parse_service(doc)
        svcs[svc.name] = svc
        states = {ip: conds[c] for ip, c in bes.items()}
        sels.extend(selections(svc, tuple(sorted(bes)), states=states))
    settings_ = LBSettings(algorithm=LBAlgorithm.MAGLEV, maglev=maglev_config(251))
    return translate(sels, svcs, settings_, service_ids=sids, backend_ids=bids)


def apply(state: dict[MapKind, dict[Any, Any]], op: Op) -> None:
    if op.value is None:
        del state[op.kind][op.key]
    else:
        state[op.kind][op.key] = op.value


def check_consistent(state: dict[MapKind, dict[Any, Any]]) -> None:
    services, bes = state[MapKind.SERVICE], state[MapKind.BACKEND]
    for key, value in services.items():
        if key.slot:
            assert value.backend_id in bes, f"slot {key} names a missing backend"
        else:
            for slot in range(1, value.count + value.qcount + 1):
                slot_key = ServiceKey(key.address, key.port, key.protocol, key.scope, slot)
                assert slot_key in services, f"master {key} counts a missing slot {slot}"
    for table in state[MapKind.MAGLEV].values():
        assert set(table) <= set(bes), "a Maglev table names a missing backend"
    for _, backend in state[MapKind.AFFINITY_MATCH]:
        assert backend in bes


def as_state(rows: Rows) -> dict[MapKind, dict[Any, Any]]:
    return {
        MapKind.SERVICE: dict(rows.services),
        MapKind.BACKEND: dict(rows.backends),
        MapKind.REV_NAT: dict(rows.rev_nat),
        MapKind.MAGLEV: dict(rows.maglev),
        MapKind.AFFINITY_MATCH: dict.fromkeys(rows.affinity, True),
    }


@settings(max_examples=60, deadline=None)
@given(service_sets, service_sets)
def test_plan_keeps_every_reference_valid(old_spec: Any, new_spec: Any) -> None:
    sids, bids = service_ids(), backend_ids()
    old = rows_for(old_spec, sids, bids)
    new = rows_for(new_spec, sids, bids)
    upserts, deletes = plan(old, new)
    state = as_state(old)
    check_consistent(state)
    for op in (*upserts, *deletes):
        apply(state, op)
        check_consistent(state)
    assert state == as_state(new)
    assert plan(new, new) == ((), ())


def test_plan_orders_kinds() -> None:
    svc = parse_service(service_doc("web", "10.96.1.1"))
    sids, bids = service_ids(), backend_ids()
    empty = Rows()
    full = translate(
        selections(svc, ("10.0.0.1",)),
        {svc.name: svc},
        LBSettings(),
        service_ids=sids,
        backend_ids=bids,
    )
    upserts, _ = plan(empty, full)
    kinds = [op.kind for op in upserts]
    assert kinds == [MapKind.BACKEND, MapKind.REV_NAT, MapKind.SERVICE, MapKind.SERVICE]
    assert [op.key.slot for op in upserts if op.kind is MapKind.SERVICE] == [1, 0]
    ups, dels = plan(full, empty)
    assert ups == ()
    assert [op.kind for op in dels] == [
        MapKind.SERVICE,
        MapKind.SERVICE,
        MapKind.REV_NAT,
        MapKind.BACKEND,
    ]
    assert [op.key.slot for op in dels if op.kind is MapKind.SERVICE] == [0, 1]
    assert SVCType.CLUSTER_IP.value in format_service_list(full)


# --- incremental translation gives exactly what translating everything gives -----------------

CONDITIONS = {
    "ready": {},
    "terminating": {"ready": False, "serving": True, "terminating": True},
    "gone": {"ready": False, "serving": False, "terminating": True},
    "not-ready": {"ready": False},
}
owner_specs = st.one_of(
    st.none(),  # the owner is gone
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["ClusterIP", "NodePort"]),
            # Two Services may claim the same ClusterIP (a misconfiguration the rows survive).
            "ip": st.sampled_from(["10.96.0.10", "10.96.0.11", "10.96.0.12"]),
            "etp": st.sampled_from(["Cluster", "Local"]),
            "affinity": st.booleans(),
            "maglev": st.booleans(),
            "backends": st.dictionaries(
                # Backends shared between Services, in different states.
                st.sampled_from([f"10.0.0.{i}" for i in range(1, 6)]),
                st.sampled_from(sorted(CONDITIONS)),
                max_size=4,
            ),
        }
    ),
)
OWNERS = ["a", "b", "c", "hostport"]
steps = st.lists(
    st.dictionaries(st.sampled_from(OWNERS), owner_specs, min_size=1, max_size=3),
    min_size=1,
    max_size=6,
)
INCREMENTAL_SETTINGS = LBSettings(
    algorithm_annotation=True, maglev=maglev_config(251), external_cluster_ip=True
)


def owner_selections(name: str, spec: dict[str, Any]) -> tuple[list[Selection], Service | None]:
    if name == "hostport":  # a pod's hostPort on NodePort 30080's surrogate address too
        pod = ServiceName("default", "pod")
        return list(
            hostport_frontends(
                pod,
                ipaddress.ip_address(sorted(spec["backends"] or {"10.0.0.9": ""})[0]),
                [{"hostPort": 30080, "containerPort": 8080}],
                node_name=NODE,
                node_addresses=NODE_IPS,
            )
        ), None
    doc = service_doc(
        name,
        spec["ip"],
        type=spec["type"],
        externalTrafficPolicy=spec["etp"],
        annotations={"service.cilium.io/lb-algorithm": "maglev" if spec["maglev"] else "random"},
    )
    if spec["affinity"]:
        doc["spec"]["sessionAffinity"] = "ClientIP"
    svc = parse_service(doc)
    states = {ip: CONDITIONS[c] for ip, c in spec["backends"].items()}
    return selections(svc, tuple(sorted(spec["backends"])), states=states), svc


def canonical(rows: Rows) -> dict[str, Any]:
    """The rows with every ID replaced by what it stands for (frontend, backend address)."""
    fe = {v.rev_nat_index: str(k.frontend) for k, v in rows.services.items() if k.slot == 0}
    be = {bid: str(v.address) for bid, v in rows.backends.items()}
    return {
        "services": {
            (str(k.frontend), k.slot): (
                be[v.backend_id] if k.slot else v.backend_id,
                v.count,
                v.qcount,
                fe[v.rev_nat_index],
                v.flags,
            )
            for k, v in rows.services.items()
        },
        "backends": {be[bid]: v.state for bid, v in rows.backends.items()},
        "rev_nat": {fe[rev]: addr for rev, addr in rows.rev_nat.items()},
        "maglev": {fe[rev]: tuple(be[b] for b in t) for rev, t in rows.maglev.items()},
        "affinity": {(fe[rev], be[bid]) for rev, bid in rows.affinity},
    }


@settings(max_examples=80, deadline=None)
@given(steps)
def test_incremental_changes_give_the_rows_of_a_full_translation(changes: Any) -> None:
    sids, bids = service_ids(), backend_ids()
    tables: MaglevTables = {}
    builder = RowBuilder(
        INCREMENTAL_SETTINGS, service_ids=sids, backend_ids=bids, maglev_tables=tables
    )
    maps = as_state(Rows())
    current: dict[str, tuple[list[Selection], Service | None]] = {}
    for step in changes:
        for name, spec in step.items():
            owner = ServiceName("default", "pod" if name == "hostport" else name)
            if spec is None:
                current.pop(name, None)
                builder.remove_owner(owner)
            else:
                current[name] = owner_selections(name, spec)
                builder.set_owner(owner, *current[name])
        upserts, deletes = builder.commit()
        for op in (*upserts, *deletes):  # the plan of touched keys keeps references valid
            apply(maps, op)
            check_consistent(maps)
        rows = builder.rows()
        assert maps == as_state(rows)  # the maps hold exactly the rows
        assert set(tables) == set(rows.maglev)  # no table kept for a frontend gone
        everything = [sel for sels, _ in current.values() for sel in sels]
        services = {svc.name: svc for _, svc in current.values() if svc is not None}
        # With the same IDs held: the very same rows, and no ID kept for anything gone.
        same_sids = type(sids).from_dict(sids.to_dict())
        same_bids = type(bids).from_dict(bids.to_dict())
        again = translate(
            everything,
            services,
            INCREMENTAL_SETTINGS,
            service_ids=same_sids,
            backend_ids=same_bids,
        )
        assert again == rows
        assert (same_sids.ids, same_bids.ids) == (sids.ids, bids.ids)
        # From nothing: the same rows up to the choice of IDs.
        fresh = translate(
            everything,
            services,
            INCREMENTAL_SETTINGS,
            service_ids=service_ids(),
            backend_ids=backend_ids(),
        )
        assert canonical(fresh) == canonical(rows)
        # One owner per frontend (Services first, then by name); a shared backend's row has
        # its state in the frontend with the highest address.
        active: dict[L3n4Addr, tuple[tuple[bool, ServiceName], Selection]] = {}
        for sel in everything:
            rank = (sel.frontend.type is SVCType.HOST_PORT, sel.frontend.service)
            if sel.frontend.address not in active or rank < active[sel.frontend.address][0]:
                active[sel.frontend.address] = (rank, sel)
        states = {}
        for fe in sorted(active, key=lambda a: a.sort_key()):
            for be in (*active[fe][1].slots, *active[fe][1].maintenance):
                states[str(be.address)] = be.state
        assert canonical(rows)["backends"] == states
        assert set(canonical(rows)["rev_nat"]) == {str(fe) for fe in active}
