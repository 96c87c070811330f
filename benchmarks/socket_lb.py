"""Socket-LB at scale: the connection rate to one ClusterIP with 1, 1,000, 10,000 and 50,000
services programmed, against a kube-proxy-style iptables DNAT chain holding the same 10,000
services, built in the same run; and the time the agent's path (core translation, plan, map
writes) takes to program 10,000 and 50,000 services.

Setup (namespaces, cgroup and pins this script creates and removes):

- pylium, once per service count: ``bpf_sock`` loaded in its own pin directory (service and
  backend maps sized for 50,000 services), its hooks attached to its own cgroup on a private
  cgroup2 mount, its own network namespace with a backend on 127.0.0.2:8080. Services
  ``10.96.x.y:80`` (one backend each, the backend shared) go through the same code as the
  agent's: ``parse_service`` / ``parse_endpoint_slice`` -> frontends -> ``select`` ->
  ``translate`` -> ``plan`` -> ``LBMaps.apply``. The client process joins the cgroup and
  connects to the *first* service's ClusterIP in a loop (connect, then close with an RST so
  that no TIME_WAIT piles up).
- iptables: another namespace with the same backend, a route for 10.96.0.0/12 via lo, and
  kube-proxy's chain layout in the nat table (``OUTPUT -> KUBE-SERVICES``, one rule per
  service ``-d VIP -p tcp --dport 80 -j KUBE-SVC-n``, ``KUBE-SVC-n -> KUBE-SEP-n -> DNAT``),
  restored with ``iptables-restore`` (iptables-nft here). The client connects to the service
  in the middle of the chain (kube-proxy's average case: KUBE-SERVICES is matched in order).

Rates are interleaved rounds (every setup once per round), medians reported. Writes
``benchmarks/results/socket_lb.json``. Run as root:
``.venv/bin/python benchmarks/socket_lb.py [--rounds 3] [--seconds 2]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _lab
from _lab import sh

from pylium.adapters import fsmount
from pylium.adapters.bpf import bpffs, cgroup
from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import lb
from pylium.core.lb import ids
from pylium.core.lb.k8s import EndpointSlice, Service, parse_endpoint_slice, parse_service
from pylium.core.lb.maglev import maglev_config
from pylium.core.lb.services import backends, frontends, select
from pylium.core.lb.translate import LBSettings, Rows, plan, translate

COUNTS = (1, 1000, 10000, 50000)
IPTABLES_COUNT = 10000
MAP_MAX = 262144
NS_PYLIUM = "plbs-pylium"
NS_IPT = "plbs-ipt"
HOOKS = {
    "cil_sock4_connect": cgroup.AttachType.CGROUP_INET4_CONNECT,
    "cil_sock4_getpeername": cgroup.AttachType.CGROUP_INET4_GETPEERNAME,
}

SERVER = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.2", 8080)); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""

CLIENT = """
import socket, struct, sys, time
vip, seconds = sys.argv[1], float(sys.argv[2])
linger = struct.pack("ii", 1, 0)
cpu0 = time.process_time(); end = time.monotonic() + seconds; n = 0
while time.monotonic() < end:
    c = socket.create_connection((vip, 80))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger); c.close(); n += 1
print(n / seconds, (time.process_time() - cpu0) / n * 1e6)
"""


def vip(i: int) -> str:
    return str(ipaddress.IPv4Address("10.96.0.0") + 16 + i)


def service_body(i: int, namespace: str = "bench") -> dict[str, Any]:
    """Service ``svc-i``: ClusterIP :func:`vip` (i), port 80 -> 8080, no selector (its
    EndpointSlice is the user's, :func:`slice_body`)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i}", "namespace": namespace},
        "spec": {"clusterIP": vip(i), "ports": [{"port": 80, "targetPort": 8080}]},
    }


def slice_body(i: int, namespace: str = "bench", backend: str = "127.0.0.2") -> dict[str, Any]:
    """The EndpointSlice of ``svc-i``: one backend, port 8080."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": f"svc-{i}"},
        },
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": [{"addresses": [backend]}],
    }


def service_docs(start: int, stop: int) -> tuple[list[Service], list[EndpointSlice]]:
    services = [parse_service(service_body(i)) for i in range(start, stop)]
    slices = [parse_endpoint_slice(slice_body(i)) for i in range(start, stop)]
    return services, slices


class Programmer:
    """The agent's path, with the previous rows kept for the diff."""

    def __init__(self, maps: lb.LBMaps) -> None:
        self.maps = maps
        self.rows = Rows()
        self.service_ids = ids.service_ids()
        self.backend_ids = ids.backend_ids()
        self.services: list[Service] = []
        self.slices: list[EndpointSlice] = []

    def program(self, count: int) -> dict[str, float]:
        t0 = time.perf_counter()
        more_s, more_e = service_docs(len(self.services), count)
        self.services += more_s
        self.slices += more_e
        t1 = time.perf_counter()
        by_service = {es.service: [es] for es in self.slices}
        selections = []
        for svc in self.services:
            cands = backends(svc, by_service.get(svc.name, []))
            selections += [select(svc, fe, cands, node_name="n1") for fe in frontends(svc)]
        new = translate(
            selections,
            {s.name: s for s in self.services},
            LBSettings(maglev=maglev_config()),
            service_ids=self.service_ids,
            backend_ids=self.backend_ids,
        )
        upserts, deletes = plan(self.rows, new)
        t2 = time.perf_counter()
        self.maps.apply([*upserts, *deletes])
        t3 = time.perf_counter()
        self.rows = new
        return {
            "parse_s": t1 - t0,
            "translate_plan_s": t2 - t1,
            "map_writes_s": t3 - t2,
            "total_s": t3 - t0,
            "ops": len(upserts) + len(deletes),
        }


def netns_with_server(name: str) -> subprocess.Popen[str]:
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def rate(netns: str, target: str, seconds: float, cg: Path | None) -> tuple[float, float]:
    """(connections per second, client CPU microseconds per connection: user + system, which
    holds the hook's and the netfilter chain's cost and is less sensitive than the wall-clock
    rate to other load on the machine)."""

    def join() -> None:
        if cg is not None:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    out = sh(
        "ip",
        "netns",
        "exec",
        netns,
        sys.executable,
        "-c",
        CLIENT,
        target,
        str(seconds),
        capture_output=True,
        preexec_fn=join,
    ).stdout
    conn_rate, cpu_us = out.split()
    return float(conn_rate), float(cpu_us)


def iptables_rules(count: int) -> str:
    lines = ["*nat", ":KUBE-SERVICES - [0:0]"]
    lines += [f":KUBE-SVC-{i} - [0:0]\n:KUBE-SEP-{i} - [0:0]" for i in range(count)]
    lines.append("-A OUTPUT -j KUBE-SERVICES")
    for i in range(count):
        lines.append(f"-A KUBE-SERVICES -d {vip(i)}/32 -p tcp --dport 80 -j KUBE-SVC-{i}")
        lines.append(f"-A KUBE-SVC-{i} -j KUBE-SEP-{i}")
        lines.append(f"-A KUBE-SEP-{i} -p tcp -j DNAT --to-destination 127.0.0.2:8080")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


class PyliumSetup:
    """One service count: its object, pins, cgroup and namespace."""

    def __init__(self, count: int, work: Path, mount: Path) -> None:
        self.count = count
        self.netns = f"{NS_PYLIUM}-{count}"
        self.pins = Path("/sys/fs/bpf") / f"{work.name}-{count}"
        self.cg = mount / f"pylium-bench-{work.name}-{count}"
        self.cg.mkdir()
        self.server: subprocess.Popen[str] | None = None
        sizes = {lb.SERVICES: MAP_MAX, lb.BACKENDS: MAP_MAX, lb.REV_NAT: MAP_MAX}
        self.obj: BpfObject | None = BpfObject(
            build("bpf_sock"), self.pins, max_entries=sizes, **lb.sock_load_options(16381)
        ).load()
        for prog, typ in HOOKS.items():
            cgroup.attach(self.obj.prog_fd(prog), self.cg, typ)
        self.programmer = Programmer(lb.LBMaps({n: self.obj.map_fd(n) for n in lb.NAMES}))
        self.server = netns_with_server(self.netns)

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.communicate()
        subprocess.run(["ip", "netns", "del", self.netns], check=False)
        if self.obj is not None:
            self.obj.close()
        for prog, typ in HOOKS.items():
            cgroup.detach(self.cg, typ, prog[:15])
        self.cg.rmdir()
        shutil.rmtree(self.pins, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")

    work = Path(tempfile.mkdtemp(prefix="plbs-"))
    bpffs.ensure_mounted(Path("/sys/fs/bpf"))
    mount = work / "cgroupv2"
    fsmount.ensure_mounted(mount, fsmount.CGROUP2)
    setups: list[PyliumSetup] = []
    ipt_server: subprocess.Popen[str] | None = None
    try:
        programming: dict[int, dict[str, float]] = {}
        for count in COUNTS:
            setups.append(PyliumSetup(count, work, mount))
            programming[count] = setups[-1].programmer.program(count)
            print(f"{count} services programmed: {programming[count]}", flush=True)
        ipt_server = netns_with_server(NS_IPT)
        sh("ip", "-n", NS_IPT, "route", "add", "10.96.0.0/12", "dev", "lo")
        t0 = time.perf_counter()
        sh("ip", "netns", "exec", NS_IPT, "iptables-restore", input=iptables_rules(IPTABLES_COUNT))
        ipt_program_s = time.perf_counter() - t0
        ipt_target = vip(IPTABLES_COUNT // 2)

        runs: dict[int, list[tuple[float, float]]] = {c: [] for c in COUNTS}
        ipt_runs: list[tuple[float, float]] = []
        for r in range(args.rounds):
            for setup in setups:
                runs[setup.count].append(rate(setup.netns, vip(0), args.seconds, setup.cg))
            ipt_runs.append(rate(NS_IPT, ipt_target, args.seconds, None))
            print(f"round {r + 1}: {[runs[c][-1] for c in COUNTS]} ipt {ipt_runs[-1]}")
        med = {c: statistics.median(x[0] for x in v) for c, v in runs.items()}
        cpu = {c: statistics.median(x[1] for x in v) for c, v in runs.items()}
        ipt = statistics.median(x[0] for x in ipt_runs)
        ipt_cpu = statistics.median(x[1] for x in ipt_runs)
        result = {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections_per_second": {str(c): med[c] for c in COUNTS},
            "client_cpu_us_per_connection": {str(c): cpu[c] for c in COUNTS},
            "runs_rate_cpu": {str(c): runs[c] for c in COUNTS},
            "ratio_50000_over_1": med[50000] / med[1],
            "ratio_50000_over_1_by_cpu": cpu[1] / cpu[50000],
            "iptables_10000_connections_per_second": ipt,
            "iptables_10000_client_cpu_us_per_connection": ipt_cpu,
            "iptables_runs_rate_cpu": ipt_runs,
            "ratio_pylium_over_iptables_10000": med[10000] / ipt,
            "ratio_pylium_over_iptables_10000_by_cpu": ipt_cpu / cpu[10000],
            "program_seconds": {str(c): programming[c] for c in COUNTS},
            "iptables_restore_10000_s": ipt_program_s,
        }
        print(json.dumps(result, indent=2))
        _lab.write_results("socket_lb", result)
    finally:
        if ipt_server is not None:
            ipt_server.kill()
            ipt_server.communicate()
        subprocess.run(["ip", "netns", "del", NS_IPT], check=False)
        for setup in setups:
            setup.close()
        fsmount.unmount(mount, fsmount.CGROUP2)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
