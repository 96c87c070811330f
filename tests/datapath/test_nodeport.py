"""The per-packet NodePort path (BPF_PROG_TEST_RUN): bpf_host's cil_from_netdev translates a
client's packet to a NodePort, LoadBalancer or ExternalIP frontend, and the reply path puts it
back (bpf_lxc's from-container for a local backend, bpf_overlay's from-overlay for a remote one
through the tunnel, cil_from_netdev again in native routing). The bytes that come out are
checked: addresses, ports, IPv4 and L4 checksums. Services are programmed through the core
pipeline (Service + EndpointSlice -> selections -> rows -> plan) into the maps, as the agent
does."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    BpfObject,
    prog_test_run,
)
from pylium.adapters.maps import config, ct, endpoints, events, ipcache, lb, nat
from pylium.agent.ctgc import ConntrackGC
from pylium.core.conntrack import NAT_GC_GRACE, nat_dump_line
from pylium.core.lb import ids
from pylium.core.lb.k8s import parse_endpoint_slice, parse_service
from pylium.core.lb.services import backends, frontends, select
from pylium.core.lb.translate import LBSettings, Rows, plan, translate

from .packets import ACK, SYN, _csum, ipv4_tcp, ipv4_udp
from .seed import POD_B, REMOTE, seed

pytestmark = pytest.mark.root

NODE = ipaddress.IPv4Address("192.168.1.11")
ROUTER = ipaddress.IPv4Address("10.0.1.1")
CLIENT, CLIENT2 = "192.168.50.7", "192.168.50.8"
NATIVE_REMOTE = "10.0.3.30"  # a pod on another node, routed natively (no tunnel endpoint)
NODE_PORT = 30080
LB_IP, EXTERNAL_IP = "192.168.60.10", "192.168.60.11"
CLUSTER_IP = "10.96.0.10"
REMOTE_POD_ID = 3003


@dataclass(frozen=True)
class Packet:
    saddr: str
    daddr: str
    sport: int
    dport: int
    proto: int


def parse(frame: bytes) -> Packet:
    """The addresses and ports of an Ethernet/IPv4/TCP-or-UDP frame, after checking its IPv4
    header checksum and its L4 checksum (over the pseudo header)."""
    ip = frame[14 : 14 + (frame[14] & 0xF) * 4]
    assert _csum(ip) == 0, "IPv4 header checksum"
    total = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    l4 = frame[14 + len(ip) : 14 + total]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(l4))
    assert _csum(pseudo + l4) == 0, "L4 checksum"
    sport, dport = struct.unpack("!HH", l4[:4])
    src, dst = (str(ipaddress.IPv4Address(a)) for a in (ip[12:16], ip[16:20]))
    return Packet(src, dst, sport, dport, proto)


def ip_options(frame: bytes) -> bytes:
    return frame[34 : 14 + (frame[14] & 0xF) * 4]


def service_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": CLUSTER_IP,
            "externalIPs": [EXTERNAL_IP],
            "ports": [
                {"name": "tcp", "port": 80, "protocol": "TCP", "nodePort": NODE_PORT},
                {"name": "udp", "port": 53, "protocol": "UDP", "nodePort": NODE_PORT},
            ],
            **spec,
        },
        "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}},
    }


def slice_doc(endpoints: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [
            {"name": "tcp", "port": 8080, "protocol": "TCP"},
            {"name": "udp", "port": 5353, "protocol": "UDP"},
        ],
        "endpoints": [
            {"addresses": [ip], "nodeName": node, "conditions": {"ready": True}}
            for ip, node in endpoints
        ],
    }


def program(maps: lb.LBMaps, endpoints: list[tuple[str, str]], **spec: Any) -> None:
    """The service on node n1 (address NODE) with these (backend IP, node) endpoints."""
    svc = parse_service(service_doc(**spec))
    cands = backends(svc, [parse_endpoint_slice(slice_doc(endpoints))])
    sels = [select(svc, fe, cands, node_name="n1") for fe in frontends(svc, node_addresses=(NODE,))]
    rows = translate(
        sels,
        {svc.name: svc},
        LBSettings(),
        service_ids=ids.service_ids(),
        backend_ids=ids.backend_ids(),
    )
    upserts, deletes = plan(Rows(), rows)
    maps.apply([*upserts, *deletes])


def _be32(ip: ipaddress.IPv4Address) -> int:
    return int.from_bytes(ip.packed, sys.byteorder)


@pytest.fixture
def mode() -> int:
    """bpf_host's nodeport_mode: 0 snat (1 dsr, 2 hybrid where a test says so)."""
    return 0


@pytest.fixture
def objs(lxc: BpfObject, pin_dir: Path, mode: int) -> Iterator[tuple[BpfObject, lb.LBMaps]]:
    seed(lxc)
    ipc = ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME))
    for ip, identity in ((NODE, 1), (ROUTER, 1)):
        ipc.upsert(ipaddress.IPv4Network(f"{ip}/32"), ipcache.Entry(identity=identity))
    ipc.upsert(ipaddress.IPv4Network("10.0.3.0/24"), ipcache.Entry(identity=REMOTE_POD_ID))
    sock = BpfObject(build("bpf_sock"), pin_dir).load()
    constants = {
        "enable_nodeport": 1,
        "ipv4_nodeport": _be32(NODE),
        "ipv4_gateway": _be32(ROUTER),
        "monitor_aggregation": 0,
        "nodeport_mode": mode,
    }
    host = BpfObject(build("bpf_host"), pin_dir, constants=constants).load()
    maps = lb.LBMaps({name: sock.map_fd(name) for name in lb.NAMES})
    yield host, maps
    host.close()
    sock.close()


def run(obj: BpfObject, prog: str, packet: bytes, mark: int = 0) -> tuple[int, Packet]:
    rc, out = prog_test_run(obj.prog_fd(prog), packet, mark=mark)
    return rc, parse(out)


FROM_NETDEV = "cil_from_netdev"


def test_local_backend_keeps_the_client_and_replies_from_the_frontend(
    lxc: BpfObject, objs: tuple[BpfObject, lb.LBMaps]
) -> None:
    host, maps = objs
    program(maps, [(str(POD_B), "n1")])
    for frontend in (str(NODE), LB_IP, EXTERNAL_IP):
        rc, out = run(
            host,
            FROM_NETDEV,
            ipv4_tcp(CLIENT, frontend, 40000, NODE_PORT if frontend == str(NODE) else 80),
        )
        assert rc == TC_ACT_REDIRECT  # into the pod's namespace
        assert out == Packet(CLIENT, str(POD_B), 40000, 8080, 6)
        # the pod's reply leaves from the frontend, straight to the client
        reply = ipv4_tcp(str(POD_B), CLIENT, 8080, 40000, flags=SYN | ACK)
        rc, back = run(lxc, "cil_from_container", reply)
        port = NODE_PORT if frontend == str(NODE) else 80
        assert back == Packet(frontend, CLIENT, port, 40000, 6)
        assert rc in (TC_ACT_REDIRECT, TC_ACT_OK)  # OK: this machine has no route to CLIENT
    # UDP too, checksum included
    rc, out = run(host, FROM_NETDEV, ipv4_udp(CLIENT, str(NODE), 40001, NODE_PORT))
    assert (rc, out) == (TC_ACT_REDIRECT, Packet(CLIENT, str(POD_B), 40001, 5353, 17))


def test_remote_backend_through_the_tunnel_is_snatted_to_the_router_ip(
    objs: tuple[BpfObject, lb.LBMaps], overlay: BpfObject
) -> None:
    host, maps = objs
    config.ConfigMap(host.map_fd(config.NAME)).set(tunnel_ifindex=1)
    program(maps, [(str(REMOTE), "n2")])
    rc, out = run(host, FROM_NETDEV, ipv4_tcp(CLIENT, str(NODE), 40000, NODE_PORT))
    assert rc == TC_ACT_REDIRECT  # into cilium_vxlan
    assert out == Packet(str(ROUTER), str(REMOTE), 40000, 8080, 6)  # the client's port kept
    # a second client on the same port gets another SNAT port
    rc, out2 = run(host, FROM_NETDEV, ipv4_tcp(CLIENT2, str(NODE), 40000, NODE_PORT))
    assert out2.saddr == str(ROUTER) and out2.sport != 40000 and out2.sport >= 32768
    # the backend's replies come back through the tunnel to the router IP
    for client, snat_port in ((CLIENT, 40000), (CLIENT2, out2.sport)):
        reply = ipv4_tcp(str(REMOTE), str(ROUTER), 8080, snat_port, flags=SYN | ACK)
        rc, back = run(overlay, "cil_from_overlay", reply, mark=REMOTE_POD_ID)
        assert back == Packet(str(NODE), client, NODE_PORT, 40000, 6)
        assert rc in (TC_ACT_REDIRECT, TC_ACT_OK)
    entries = nat.NATMap(host.map_fd(nat.NAME)).dump()
    assert {
        (t.flags, str(t.saddr), t.sport, str(t.daddr), t.dport): (str(e.address), e.port)
        for t, e in entries.items()
        if str(t.saddr) == CLIENT or str(t.daddr) == CLIENT or t.dport == 40000
    } == {
        (nat.TUPLE_F_OUT, CLIENT, 40000, str(REMOTE), 8080): (str(ROUTER), 40000),
        (nat.TUPLE_F_IN, str(REMOTE), 8080, str(ROUTER), 40000): (CLIENT, 40000),
        (nat.TUPLE_F_SERVICE, str(REMOTE), 8080, CLIENT, 40000): (str(NODE), NODE_PORT),
        (nat.TUPLE_F_SERVICE, str(REMOTE), 8080, CLIENT2, 40000): (str(NODE), NODE_PORT),
    }


def test_remote_backend_in_native_routing_is_snatted_to_the_node(
    objs: tuple[BpfObject, lb.LBMaps],
) -> None:
    host, maps = objs
    program(maps, [(NATIVE_REMOTE, "n2")])
    rc, out = run(host, FROM_NETDEV, ipv4_tcp(CLIENT, LB_IP, 40000, 80))
    assert out == Packet(str(NODE), NATIVE_REMOTE, 40000, 8080, 6)
    assert rc in (TC_ACT_REDIRECT, TC_ACT_OK)
    reply = ipv4_tcp(NATIVE_REMOTE, str(NODE), 8080, 40000, flags=SYN | ACK)
    rc, back = run(host, FROM_NETDEV, reply)
    assert back == Packet(LB_IP, CLIENT, 80, 40000, 6)
    # a stray packet to the node from that backend is no reply: untouched
    stray = ipv4_tcp(NATIVE_REMOTE, str(NODE), 8080, 40999, flags=SYN | ACK)
    assert run(host, FROM_NETDEV, stray) == (TC_ACT_OK, parse(stray))


def test_conntrack_gc_takes_a_finished_connections_nat_entries(
    objs: tuple[BpfObject, lb.LBMaps],
) -> None:
    """Two clients' connections SNATed to a remote backend; the first one's conntrack entry
    expires: the agent's GC deletes it and that connection's three NAT entries, and leaves
    the second connection's alone."""
    host, maps = objs
    program(maps, [(NATIVE_REMOTE, "n2")])
    for client in (CLIENT, CLIENT2):
        out = run(host, FROM_NETDEV, ipv4_tcp(client, LB_IP, 40000, 80))[1]
        assert out.daddr == NATIVE_REMOTE and out.saddr == str(NODE)
    nat_map = nat.NATMap(host.map_fd(nat.NAME))
    ct_maps = [ct.CTMap(host.map_fd(name), name) for name in (ct.TCP_NAME, ct.ANY_NAME)]

    def connection(client: str) -> set[ct.Tuple]:
        ip = ipaddress.IPv4Address(client)
        return {k for k, e in nat_map.dump().items() if ip in (k.saddr, k.daddr, e.address)}

    first, second = connection(CLIENT), connection(CLIENT2)
    assert len(first) == len(second) == 3
    # what `pylium bpf nat list` prints for the first connection's SNAT
    now = int(time.monotonic())
    lines = [nat_dump_line(k, e, now) for k, e in nat_map.dump().items() if k in first]
    snat = next(line for line in lines if line.startswith(f"TCP OUT {CLIENT}:"))
    assert snat.startswith(f"TCP OUT {CLIENT}:40000 -> {NATIVE_REMOTE}:8080 XLATE_SRC {NODE}:")
    assert snat.endswith("sec ago NeedsCT=0")

    nothing = ConntrackGC(ct_maps, nat_map).run_once()  # everything alive (and new)
    assert nothing.nat_deleted == 0 and set(nat_map.dump()) == first | second
    service = ct.Tuple(
        daddr=ipaddress.IPv4Address(LB_IP),
        saddr=ipaddress.IPv4Address(CLIENT),
        dport=80,
        sport=40000,
        nexthdr=6,
        flags=ct.TUPLE_F_SERVICE,
    )
    entry = ct_maps[0].get(service)
    assert entry is not None
    ct_maps[0].upsert(service, dataclasses.replace(entry, lifetime=0))  # the connection ended
    # past the grace period for new NAT entries, within the second connection's lifetime
    gc = ConntrackGC(ct_maps, nat_map, clock=lambda: time.monotonic() + NAT_GC_GRACE)
    result = gc.run_once()
    assert (result.ct_deleted[ct.TCP_NAME], result.nat_deleted) == (1, 3)
    assert ct_maps[0].get(service) is None
    assert set(nat_map.dump()) == second


def test_a_connection_keeps_its_backend(objs: tuple[BpfObject, lb.LBMaps]) -> None:
    host, maps = objs
    program(maps, [(NATIVE_REMOTE, "n2"), ("10.0.3.31", "n2"), ("10.0.3.32", "n2")])
    chosen = set()
    for sport in range(41000, 41012):
        first = run(host, FROM_NETDEV, ipv4_tcp(CLIENT, str(NODE), sport, NODE_PORT))[1]
        for _ in range(3):
            again = run(host, FROM_NETDEV, ipv4_tcp(CLIENT, str(NODE), sport, NODE_PORT, ACK))
            assert again[1].daddr == first.daddr
        chosen.add(first.daddr)
    assert len(chosen) > 1  # random among the three (12 connections)


def test_external_traffic_policy_local(objs: tuple[BpfObject, lb.LBMaps], lxc: BpfObject) -> None:
    host, maps = objs
    # a backend here and one elsewhere: only the local one, the client's address kept
    program(maps, [(str(POD_B), "n1"), (NATIVE_REMOTE, "n2")], externalTrafficPolicy="Local")
    for sport in range(42000, 42008):
        rc, out = run(host, FROM_NETDEV, ipv4_tcp(CLIENT, str(NODE), sport, NODE_PORT))
        assert (rc, out) == (TC_ACT_REDIRECT, Packet(CLIENT, str(POD_B), sport, 8080, 6))
    # no backend on this node: dropped, "Service backend not found"
    program(maps, [(NATIVE_REMOTE, "n2")], externalTrafficPolicy="Local")
    reader = events.EventReader(lxc.map_fd(events.NAME))
    try:
        rc, _ = run(host, FROM_NETDEV, ipv4_tcp(CLIENT, LB_IP, 42100, 80))
        assert rc == TC_ACT_SHOT
        drops = [e for e in reader.poll() if e.type == events.TYPE_DROP]
        assert [(d.reason, str(d.daddr), d.dport) for d in drops] == [(158, LB_IP, 80)]
    finally:
        reader.close()


def test_other_traffic_is_untouched(objs: tuple[BpfObject, lb.LBMaps]) -> None:
    host, maps = objs
    program(maps, [(str(POD_B), "n1")])
    for packet in (
        ipv4_tcp(CLIENT, CLUSTER_IP, 40000, 80),  # ClusterIP: not reachable from outside
        ipv4_tcp(CLIENT, str(NODE), 40000, NODE_PORT + 1),  # no such NodePort
        ipv4_tcp(CLIENT, str(NODE), 40000, 22),
    ):
        assert run(host, FROM_NETDEV, packet) == (TC_ACT_OK, parse(packet))


@pytest.mark.parametrize("mode", [1, 2], ids=["dsr", "hybrid"])
def test_dsr_in_native_routing(
    lxc: BpfObject, objs: tuple[BpfObject, lb.LBMaps], mode: int
) -> None:
    host, maps = objs
    program(maps, [(NATIVE_REMOTE, "n2")])
    # the SYN: DNATed, the client kept, the frontend in the IPv4 option (0x9a, 8, port, addr)
    rc, out = prog_test_run(
        host.prog_fd(FROM_NETDEV), ipv4_tcp(CLIENT, str(NODE), 40000, NODE_PORT)
    )
    assert parse(out) == Packet(CLIENT, NATIVE_REMOTE, 40000, 8080, 6)
    assert ip_options(out) == bytes([0x9A, 8]) + struct.pack("!H", NODE_PORT) + NODE.packed
    assert rc in (TC_ACT_REDIRECT, TC_ACT_OK)
    # the rest of the connection: same backend, no option
    rc, later = prog_test_run(
        host.prog_fd(FROM_NETDEV), ipv4_tcp(CLIENT, str(NODE), 40000, NODE_PORT, ACK)
    )
    assert (parse(later), ip_options(later)) == (parse(out), b"")
    # UDP: dsr carries the option on every datagram; hybrid SNATs it
    _, udp = prog_test_run(host.prog_fd(FROM_NETDEV), ipv4_udp(CLIENT, LB_IP, 40001, 53))
    if mode == 1:
        assert parse(udp) == Packet(CLIENT, NATIVE_REMOTE, 40001, 5353, 17)
        assert ip_options(udp)[:2] == bytes([0x9A, 8])
    else:
        assert parse(udp) == Packet(str(NODE), NATIVE_REMOTE, 40001, 5353, 17)

    # The backend's node (the same maps stand for it): the pod is local there. Its
    # from-netdev records the frontend from the option, the packet goes on to the pod
    # (to-container), and the pod's reply leaves from the frontend, to the client.
    endpoints.EndpointsMap(lxc.map_fd(endpoints.NAME)).upsert(
        ipaddress.IPv4Address(NATIVE_REMOTE),
        endpoints.EndpointInfo(ifindex=13, endpoint_id=103, identity=REMOTE_POD_ID),
    )
    rc, there = prog_test_run(host.prog_fd(FROM_NETDEV), out)
    assert (rc, there) == (TC_ACT_OK, out)
    assert prog_test_run(lxc.prog_fd("cil_to_container"), out)[0] == TC_ACT_OK
    reply = ipv4_tcp(NATIVE_REMOTE, CLIENT, 8080, 40000, flags=SYN | ACK)
    rc, back = run(lxc, "cil_from_container", reply)
    assert back == Packet(str(NODE), CLIENT, NODE_PORT, 40000, 6)
