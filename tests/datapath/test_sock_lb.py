"""Socket-LB for real: bpf_sock's cgroup hooks attached to a cgroup v2 directory this test
creates, clients run inside it in a network namespace the test creates, services programmed
through the core pipeline (Service + EndpointSlice -> selections -> rows -> plan) and the map
wrapper. BPF_PROG_TEST_RUN cannot run cgroup sock_addr programs, so nothing here is mocked:
TCP connect(), connected and unconnected UDP reach a backend, getpeername()/recvfrom() show
the ClusterIP, a service without backends refuses with EHOSTUNREACH, and a process outside
the cgroup (same namespace) is not translated."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters import fsmount
from pylium.adapters.bpf import cgroup
from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import ipcache, lb
from pylium.adapters.netlink import netns as nl
from pylium.core.lb import ids
from pylium.core.lb.addr import ServiceName
from pylium.core.lb.k8s import parse_endpoint_slice, parse_service
from pylium.core.lb.maglev import maglev_config
from pylium.core.lb.services import backends, frontends, hostport_frontends, select
from pylium.core.lb.translate import LBSettings, Rows, plan, translate

VIP = "10.96.0.10"
HOOKS = {
    "cil_sock4_connect": cgroup.AttachType.CGROUP_INET4_CONNECT,
    "cil_sock4_sendmsg": cgroup.AttachType.CGROUP_UDP4_SENDMSG,
    "cil_sock4_recvmsg": cgroup.AttachType.CGROUP_UDP4_RECVMSG,
    "cil_sock4_getpeername": cgroup.AttachType.CGROUP_INET4_GETPEERNAME,
}

SERVERS = """
import socket, sys, threading
def tcp(ip):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 8080)); s.listen()
    while True:
        c, peer = s.accept(); c.sendall(f"{ip} {peer[0]}".encode()); c.close()
def udp(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((ip, 5353))
    while True:
        data, peer = s.recvfrom(100); s.sendto(ip.encode(), peer)
for ip in sys.argv[1:]:
    threading.Thread(target=tcp, args=(ip,), daemon=True).start()
    threading.Thread(target=udp, args=(ip,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = """
import json, socket, sys
vip, rounds = sys.argv[1], int(sys.argv[2])
out = {"tcp": [], "peer": [], "udp": [], "udp_src": [], "udp_conn": [], "udp_conn_peer": []}
try:
    for _ in range(rounds):
        c = socket.create_connection((vip, 80), timeout=5)
        out["peer"].append(list(c.getpeername()))
        out["tcp"].append(c.recv(100).decode()); c.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
        u.sendto(b"x", (vip, 53)); data, src = u.recvfrom(100)
        out["udp"].append(data.decode()); out["udp_src"].append(list(src)); u.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
        u.connect((vip, 53)); u.send(b"x"); out["udp_conn"].append(u.recv(100).decode())
        out["udp_conn_peer"].append(list(u.getpeername())); u.close()
except OSError as err:
    out["error"] = err.errno
print(json.dumps(out))
"""


def service(
    ports: list[dict[str, Any]], annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": "default", "annotations": annotations or {}},
        "spec": {"clusterIP": VIP, "ports": ports, **spec},
    }


def endpoint_slice(ips: list[str], port: int, protocol: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "echo"},
        },
        "addressType": "IPv4",
        "ports": [{"name": protocol.lower(), "port": port, "protocol": protocol}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
    }


class Services:
    """The core pipeline into the maps, keeping the previous rows for diffs."""

    def __init__(
        self,
        maps: lb.LBMaps,
        settings: LBSettings | None = None,
        annotations: dict[str, str] | None = None,
        **spec: Any,
    ) -> None:
        self.maps = maps
        self.settings = settings or LBSettings()
        self.annotations = annotations
        self.spec = spec
        self.rows = Rows()
        self.service_ids = ids.service_ids()
        self.backend_ids = ids.backend_ids()

    def program(self, backend_ips: list[str], node_port: int = 0) -> Rows:
        tcp: dict[str, Any] = {"name": "tcp", "port": 80, "protocol": "TCP"}
        if node_port:
            tcp["nodePort"] = node_port
        svc = parse_service(
            service(
                [tcp, {"name": "udp", "port": 53, "protocol": "UDP"}],
                self.annotations,
                **self.spec,
            )
        )
        slices = [
            parse_endpoint_slice(endpoint_slice(backend_ips, 8080, "TCP", "echo-tcp")),
            parse_endpoint_slice(endpoint_slice(backend_ips, 5353, "UDP", "echo-udp")),
        ]
        cands = backends(svc, slices)
        sels = [select(svc, fe, cands, node_name="n1") for fe in frontends(svc)]
        new = translate(
            sels,
            {svc.name: svc},
            self.settings,
            service_ids=self.service_ids,
            backend_ids=self.backend_ids,
        )
        upserts, deletes = plan(self.rows, new)
        self.maps.apply([*upserts, *deletes])
        self.rows = new
        return new


@pytest.fixture
def cgroup_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mount = tmp_path / "cgroupv2"
    fsmount.ensure_mounted(mount, fsmount.CGROUP2)
    path = mount / f"pylium-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    for _ in range(50):
        try:
            path.rmdir()
            break
        except OSError:
            time.sleep(0.1)  # the client processes are still leaving
    fsmount.unmount(mount, fsmount.CGROUP2)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"plt-sock-{uuid.uuid4().hex[:6]}"
    nl.create_netns(name)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    nl.delete_netns(name)


@pytest.fixture
def sock(pin_dir: Path, cgroup_dir: Path) -> Iterator[BpfObject]:
    obj = BpfObject(build("bpf_sock"), pin_dir).load()
    for prog, typ in HOOKS.items():
        cgroup.attach(obj.prog_fd(prog), cgroup_dir, typ)
    yield obj
    for prog, typ in HOOKS.items():
        cgroup.detach(cgroup_dir, typ, prog[:15])
    obj.close()


@pytest.fixture
def servers(netns: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            sys.executable,
            "-c",
            SERVERS,
            "127.0.0.2",
            "127.0.0.3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield
    proc.kill()
    proc.communicate()


def client(netns: str, cg: Path | None, rounds: int = 1) -> dict[str, Any]:
    def join() -> None:
        if cg is not None:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", CLIENT, VIP, str(rounds)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=join,
        check=True,
    )
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def maps_of(obj: BpfObject) -> lb.LBMaps:
    return lb.LBMaps({name: obj.map_fd(name) for name in lb.NAMES})


def test_hooks_attached_once_and_replaced_by_name(sock: BpfObject, cgroup_dir: Path) -> None:
    for prog, typ in HOOKS.items():
        assert [a.name for a in cgroup.attached(cgroup_dir, typ)] == [prog[:15]]
        cgroup.attach(sock.prog_fd(prog), cgroup_dir, typ)  # again: still one
        assert len(cgroup.attached(cgroup_dir, typ)) == 1


def test_clusterip_tcp_and_udp_reach_backends(
    sock: BpfObject, cgroup_dir: Path, netns: str, servers: None
) -> None:
    maps = maps_of(sock)
    rows = Services(maps).program(["127.0.0.2", "127.0.0.3"])
    assert maps.read().services == rows.services
    assert maps.read().backends == rows.backends

    out = client(netns, cgroup_dir, rounds=30)
    assert "error" not in out, out
    served = {line.split()[0] for line in out["tcp"]}
    assert served == {"127.0.0.2", "127.0.0.3"}  # random over both (30 tries)
    assert all(peer == [VIP, 80] for peer in out["peer"])  # getpeername shows the ClusterIP
    assert set(out["udp"]) <= {"127.0.0.2", "127.0.0.3"} and len(out["udp"]) == 30
    assert all(src == [VIP, 53] for src in out["udp_src"])  # recvfrom shows the ClusterIP
    assert set(out["udp_conn"]) <= {"127.0.0.2", "127.0.0.3"}
    assert all(peer == [VIP, 53] for peer in out["udp_conn_peer"])
    # every translated socket left its reverse entry
    assert any(e.frontend == (rows.rev_nat[1].address, 80) for e in maps.sock_rev_nat())


def test_scale_down_and_no_backends(
    sock: BpfObject, cgroup_dir: Path, netns: str, servers: None
) -> None:
    services = Services(maps_of(sock))
    services.program(["127.0.0.2", "127.0.0.3"])
    services.program(["127.0.0.3"])
    out = client(netns, cgroup_dir, rounds=10)
    assert {line.split()[0] for line in out["tcp"]} == {"127.0.0.3"}
    assert set(out["udp"]) == {"127.0.0.3"}

    services.program([])
    out = client(netns, cgroup_dir)
    assert out["error"] == 113  # EHOSTUNREACH, as upstream's socket-LB answers
    rows = maps_of(sock).read()
    assert not rows.backends
    assert [k.slot for k in rows.services] == [0, 0]  # masters stay, with count 0


def test_outside_the_cgroup_nothing_is_translated(
    sock: BpfObject, cgroup_dir: Path, netns: str, servers: None
) -> None:
    Services(maps_of(sock)).program(["127.0.0.2"])
    out = client(netns, None)
    assert out["error"] == 101  # ENETUNREACH: the VIP went to routing untranslated


def test_maglev_table_decides_when_the_service_has_one(
    pin_dir: Path, cgroup_dir: Path, netns: str, servers: None
) -> None:
    """service.cilium.io/lb-algorithm: maglev gives the ClusterIP a table (M = 251 here, the
    inner map sized at load); the hook takes its backend from the table, not the slots."""
    obj = BpfObject(build("bpf_sock"), pin_dir, **lb.sock_load_options(251)).load()
    try:
        for prog, typ in HOOKS.items():
            cgroup.attach(obj.prog_fd(prog), cgroup_dir, typ)
        maps = maps_of(obj)
        settings = LBSettings(algorithm_annotation=True, maglev=maglev_config(251))
        services = Services(maps, settings, {"service.cilium.io/lb-algorithm": "maglev"})
        rows = services.program(["127.0.0.2", "127.0.0.3"])
        assert len(rows.maglev) == 2 and all(len(t) == 251 for t in rows.maglev.values())
        assert maps.read().maglev == rows.maglev
        out = client(netns, cgroup_dir, rounds=20)
        assert {line.split()[0] for line in out["tcp"]} == {"127.0.0.2", "127.0.0.3"}

        # Point the TCP frontend's whole table at one backend: only it answers, though both
        # are still in the slots.
        rev = next(v.rev_nat_index for k, v in rows.services.items() if k.port == 80)
        only = next(b for b, v in rows.backends.items() if str(v.address) == "127.0.0.3:8080/TCP")
        maps.write_maglev(rev, (only,) * 251)
        out = client(netns, cgroup_dir, rounds=10)
        assert {line.split()[0] for line in out["tcp"]} == {"127.0.0.3"}
        maps.apply([*plan(services.rows, Rows())[1]])  # delete all: tables go too
        assert maps.read().maglev == {}
    finally:
        for prog, typ in HOOKS.items():
            cgroup.detach(cgroup_dir, typ, prog[:15])
        obj.close()


def test_session_affinity_keeps_a_namespace_on_its_backend(
    sock: BpfObject, cgroup_dir: Path, netns: str, servers: None
) -> None:
    """sessionAffinity: ClientIP: every connection from the namespace goes to the backend its
    first one got; when that backend leaves, the choice moves to a remaining one."""
    maps = maps_of(sock)
    services = Services(
        maps,
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
    )
    rows = services.program(["127.0.0.2", "127.0.0.3"])
    assert len(rows.affinity) == 4 and maps.read().affinity == rows.affinity
    out = client(netns, cgroup_dir, rounds=20)
    chosen = {line.split()[0] for line in out["tcp"]}
    assert len(chosen) == 1, out["tcp"]
    assert len(set(out["udp"])) == 1
    entries = maps.affinities()
    assert {e.netns for e in entries} == {True} and len({e.client for e in entries}) == 1

    (first,) = chosen
    other = "127.0.0.3" if first == "127.0.0.2" else "127.0.0.2"
    services.program([other])
    out = client(netns, cgroup_dir, rounds=5)
    assert {line.split()[0] for line in out["tcp"]} == {other}


CONNECT = """
import json, socket, sys
out = []
for target in sys.argv[1:]:
    ip, port = target.split(":")
    try:
        c = socket.create_connection((ip, int(port)), timeout=5)
        out.append([c.recv(100).decode().split()[0], list(c.getpeername())]); c.close()
    except OSError as err:
        out.append(err.errno)
print(json.dumps(out))
"""


def test_nodeport_from_a_pod_to_any_node_address(
    sock: BpfObject, cgroup_dir: Path, netns: str, servers: None
) -> None:
    """A NodePort service's surrogate 0.0.0.0:<nodePort> frontend answers connections to any
    address the ipcache knows as a node (host or remote-node) within node-port-range."""
    cache = ipcache.IPCacheMap(sock.map_fd(ipcache.NAME))
    cache.upsert(ipaddress.IPv4Network("192.0.2.1/32"), ipcache.Entry(identity=1))
    cache.upsert(ipaddress.IPv4Network("192.0.2.2/32"), ipcache.Entry(identity=6))
    cache.upsert(ipaddress.IPv4Network("192.0.2.3/32"), ipcache.Entry(identity=2))
    Services(maps_of(sock), type="NodePort").program(["127.0.0.2"], node_port=30080)
    targets = ["192.0.2.1:30080", "192.0.2.2:30080", "192.0.2.3:30080", "192.0.2.1:8080"]
    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", CONNECT, *targets],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: (cgroup_dir / "cgroup.procs").write_text(str(os.getpid())),
        check=True,
    )
    assert json.loads(result.stdout) == [
        ["127.0.0.2", ["192.0.2.1", 30080]],  # host: translated, the node address shown
        ["127.0.0.2", ["192.0.2.2", 30080]],  # remote node
        101,  # world: not a node, not translated (no route)
        101,  # outside node-port-range
    ]


def test_hostport_only_on_this_node(
    sock: BpfObject, cgroup_dir: Path, netns: str, servers: None
) -> None:
    """HostPort frontends from a pod's CNI portMappings: translated for this node's own
    address (ipcache host), by the explicit frontend and by the surrogate 0.0.0.0:<hostPort>
    for a host address without one; never for another node's address (remote-node: that
    node's own datapath has it), as upstream's sock4_wildcard_lookup_full/sock4_skip_xlate.
    ExternalIPs likewise only for the host's address."""
    cache = ipcache.IPCacheMap(sock.map_fd(ipcache.NAME))
    cache.upsert(ipaddress.IPv4Network("192.0.2.1/32"), ipcache.Entry(identity=1))
    cache.upsert(ipaddress.IPv4Network("192.0.2.4/32"), ipcache.Entry(identity=1))
    cache.upsert(ipaddress.IPv4Network("192.0.2.2/32"), ipcache.Entry(identity=6))
    sels = hostport_frontends(
        ServiceName("default", "web"),
        ipaddress.ip_address("127.0.0.3"),
        [{"hostPort": 4000, "containerPort": 8080, "protocol": "tcp"}],
        node_name="n1",
        node_addresses=(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")),
    )
    maps = maps_of(sock)
    rows = translate(
        sels, {}, LBSettings(), service_ids=ids.service_ids(), backend_ids=ids.backend_ids()
    )
    maps.apply(list(plan(Rows(), rows)[0]))
    targets = ["192.0.2.1:4000", "192.0.2.4:4000", "192.0.2.2:4000"]
    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", CONNECT, *targets],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: (cgroup_dir / "cgroup.procs").write_text(str(os.getpid())),
        check=True,
    )
    assert json.loads(result.stdout) == [
        ["127.0.0.3", ["192.0.2.1", 4000]],  # this node: its explicit frontend
        ["127.0.0.3", ["192.0.2.4", 4000]],  # another host address: the surrogate
        101,  # a frontend here, but the address is remote-node: left to the packet path
    ]
