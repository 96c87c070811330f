"""The load-balancer map wrapper on bpf_sock's real maps: a plan of thousands of entries (runs
of upserts go to the kernel in BPF_MAP_UPDATE_BATCH calls) leaves exactly the planned rows,
read back entry by entry, and so does the next plan on top (deletes, changed slots, Maglev
tables, affinity matches)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import lb
from pylium.adapters.maps.base import RawMap
from pylium.core.lb import ids
from pylium.core.lb.addr import ServiceName
from pylium.core.lb.k8s import Service, parse_endpoint_slice, parse_service
from pylium.core.lb.maglev import maglev_config
from pylium.core.lb.services import Selection, backends, frontends, select
from pylium.core.lb.translate import LBAlgorithm, LBSettings, Rows, plan, translate

SETTINGS = LBSettings(algorithm=LBAlgorithm.MAGLEV, maglev=maglev_config(251))


def selections(
    count: int, backends_each: int, offset: int = 0
) -> tuple[list[Selection], dict[ServiceName, Service]]:
    out = []
    services = {}
    for i in range(count):
        name = f"s{i}"
        svc = parse_service(
            {
                "metadata": {"name": name, "namespace": "default"},
                "spec": {
                    "clusterIP": str(ipaddress.IPv4Address("10.96.0.0") + i),
                    "type": "NodePort" if i % 50 == 0 else "ClusterIP",
                    "sessionAffinity": "ClientIP" if i % 7 == 0 else "None",
                    "ports": [{"port": 80, "nodePort": 30000 + i}],
                },
            }
        )
        es = parse_endpoint_slice(
            {
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": name},
                },
                "ports": [{"port": 8080}],
                "endpoints": [
                    {"addresses": [str(ipaddress.IPv4Address("10.1.0.0") + i * 4 + j + offset)]}
                    for j in range(backends_each)
                ],
            }
        )
        bes = backends(svc, [es])
        fes = frontends(svc, node_addresses=(ipaddress.IPv4Address("192.168.1.10"),))
        out += [select(svc, fe, bes, node_name="n1") for fe in fes]
        services[svc.name] = svc
    return out, services


def test_large_plans_leave_exactly_the_planned_rows(pin_dir: Path) -> None:
    obj = BpfObject(build("bpf_sock"), pin_dir, **lb.sock_load_options(251)).load()
    try:
        maps = lb.LBMaps({name: obj.map_fd(name) for name in lb.NAMES})
        sids, bids = ids.service_ids(), ids.backend_ids()
        first = translate(*selections(2000, 2), SETTINGS, service_ids=sids, backend_ids=bids)
        assert first.affinity and first.maglev
        assert len(first.services) > 6000
        maps.apply([*plan(Rows(), first)[0]])
        assert maps.read() == first
        # Fewer services, other backends (some slots shrink), affinity via the Services.
        second = translate(
            *selections(1500, 1, offset=1), SETTINGS, service_ids=sids, backend_ids=bids
        )
        upserts, deletes = plan(first, second)
        maps.apply([*upserts, *deletes])
        assert maps.read() == second
    finally:
        obj.close()


def test_update_many_writes_in_order(pin_dir: Path) -> None:
    obj = BpfObject(build("bpf_sock"), pin_dir, **lb.sock_load_options(251)).load()
    try:
        raw: RawMap = lb.LBMaps({name: obj.map_fd(name) for name in lb.NAMES}).rev_nat
        key = (7).to_bytes(2, "little")
        items = [(i.to_bytes(2, "little"), bytes([i % 256]) * 6) for i in range(1, 300)]
        raw.update_many([*items, (key, b"\x01" * 6), (key, b"\x02" * 6)])  # the last one wins
        assert raw.lookup(key) == [b"\x02" * 6]
        assert raw.lookup((200).to_bytes(2, "little")) == [bytes([200]) * 6]
    finally:
        obj.close()
