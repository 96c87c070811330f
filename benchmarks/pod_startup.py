"""Benchmark B9: pod (endpoint) startup, and the agent's memory per endpoint.

- ``startup``: a burst of 20 pods started at once on a one-node lab. This script is the
  container runtime: per pod it creates the namespace and executes ``pylium-cni`` ADD over
  the CNI wire protocol; a pod counts from that moment until the agent lists its endpoint
  with its policy computed and written (``GET /v1/endpoint``, polled every 20 ms; the ADD
  itself returns once the veth, addresses, routes, BPF programs, identity and endpoint map
  entries are in place). The baseline in the same round is the *plumbing floor*: a burst of
  20 minimal pyroute2 processes, each making a namespace, a veth pair into it, an address
  and routes (no BPF, no agent), in a scratch namespace of its own, timed from exec to
  exit. Rounds alternate floor and pylium (A B A B ...); the ratio per round is the p99
  (nearest rank: the slowest of 20) of pylium ÷ the floor's. Goal: ratio <= 5 (must) / 3
  (target), absolute p99 <= 2 s / 1 s.
- ``rss``: the agent's resident memory (``VmRSS``) before and after ``--endpoints`` more
  pods (added in bursts of 20, all kept), 2 s after the last; the growth divided by their
  number, and that times 1,000 (a linear extrapolation to 1,000 endpoints). Goal: <= 100 KiB
  (must) / 50 KiB (target) per endpoint.

Writes ``benchmarks/results/pod_startup.json``. Run as root:
``.venv/bin/python benchmarks/pod_startup.py [--rounds 5] [--burst 20] [--endpoints 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _lab

from pylium.adapters.agentapi import AgentClient

LAB = "bench9"
FLOOR_NS = "bench9-floor"

FLOOR = """
import sys
from pyroute2 import NetNS, config, netns
config.default_communicate_timeout = config.default_create_socket_timeout = 120  # a burst
node, pod, host, ip = sys.argv[1:5]
netns.create(pod)
with NetNS(node, flags=0) as ipr:
    ipr.link("add", ifname=host, kind="veth", peer={"ifname": "eth0", "net_ns_fd": pod})
    index = ipr.link_lookup(ifname=host)[0]
    ipr.link("set", index=index, state="up")
    ipr.route("add", dst=ip + "/32", oif=index)
with NetNS(pod, flags=0) as ipr:
    index = ipr.link_lookup(ifname="eth0")[0]
    ipr.addr("add", index=index, address=ip, prefixlen=32)
    ipr.link("set", index=index, state="up")
    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    ipr.route("add", dst="0.0.0.0/0", oif=index)
"""


def timed_threads(jobs: list[Any]) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def floor_burst(r: int, burst: int) -> list[float]:
    """Seconds per pod of one burst of the pyroute2 floor; its namespaces removed after."""
    times: list[float] = [0.0] * burst
    failures: list[str] = []
    pods = [f"bench9-f{r}-{k}" for k in range(burst)]

    def one(k: int) -> None:
        start = time.perf_counter()
        argv = [sys.executable, "-c", FLOOR, FLOOR_NS, pods[k], f"fl{k}", f"10.250.{r}.{k + 1}"]
        done = subprocess.run(argv, capture_output=True, text=True)
        times[k] = time.perf_counter() - start
        if done.returncode:
            failures.append(f"floor {pods[k]}: {done.stderr.strip().splitlines()[-1:]}")

    try:
        timed_threads([lambda k=k: one(k) for k in range(burst)])
    finally:
        for pod in pods:
            subprocess.run(["ip", "netns", "del", pod], check=False, capture_output=True)
        for k in range(burst):  # the host ends went with their peers; be sure
            subprocess.run(
                ["ip", "-n", FLOOR_NS, "link", "del", f"fl{k}"], check=False, capture_output=True
            )
    if failures:
        raise SystemExit("; ".join(failures))
    return times


class Pods:
    """Pods added through pylium-cni on the lab's node; deleted (DEL + namespace) at the end."""

    def __init__(self, node_ns: str, conf: str, agent: AgentClient) -> None:
        self.node_ns, self.conf, self.agent = node_ns, conf, agent
        self.live: list[str] = []

    def burst(self, names: list[str]) -> list[float]:
        """Seconds from namespace creation to the endpoint's policy being in place, per pod."""
        launched: dict[str, float] = {}
        ready: dict[str, float] = {}
        failures: list[str] = []
        done = threading.Event()

        def poll() -> None:
            deadline = float("inf")
            while len(ready) < len(names) and time.perf_counter() < deadline:
                now = time.perf_counter()
                for ep in self.agent.get("/v1/endpoint"):
                    cid = ep["container_id"]
                    if cid in launched and cid not in ready and ep.get("policy"):
                        ready[cid] = now
                if done.is_set():
                    deadline = min(deadline, now + (0 if failures else 120))
                time.sleep(0.02)

        def add(cid: str) -> None:
            launched[cid] = time.perf_counter()
            subprocess.run(["ip", "netns", "add", cid], check=True)
            self.live.append(cid)
            try:
                _lab.cni(self.node_ns, self.conf, "ADD", cid, cid)
            except SystemExit as err:
                failures.append(str(err))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            timed_threads([lambda cid=cid: add(cid) for cid in names])
        finally:
            done.set()
            poller.join(180)
        if failures:
            raise SystemExit("; ".join(failures))
        if len(ready) < len(names):
            raise SystemExit(f"no policy after 120 s: {sorted(set(names) - set(ready))}")
        return [ready[cid] - launched[cid] for cid in names]

    def delete_all(self) -> None:
        """DEL every pod added, then its namespace; every pod is tried, the first failure
        raised after."""
        failed: list[str] = []
        for cid in self.live:
            try:
                _lab.cni(self.node_ns, self.conf, "DEL", cid, cid)
            except SystemExit as err:
                failed.append(str(err))
            subprocess.run(["ip", "netns", "del", cid], check=False, capture_output=True)
        self.live = []
        if failed:
            raise SystemExit(failed[0])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--endpoints", type=int, default=200)
    args = parser.parse_args()
    samples: dict[str, list[list[float]]] = {"floor": [], "pylium": []}
    with _lab.lab(LAB, 1) as lab:
        state = lab.state()
        node_ns = state["nodes"]["n1"]["netns"]
        sock = Path(state["nodes"]["n1"]["state_dir"]) / "pylium.sock"
        agent = AgentClient(sock)
        pods = Pods(node_ns, _lab.cni_conf(sock), agent)
        subprocess.run(["ip", "netns", "add", FLOOR_NS], check=True)
        try:
            _lab.wait_datapath(agent)
            for r in range(args.rounds):
                samples["floor"].append(floor_burst(r, args.burst))
                samples["pylium"].append(pods.burst([f"b9r{r}p{k}" for k in range(args.burst)]))
                pods.delete_all()
                print(
                    f"round {r + 1}: p99 floor {max(samples['floor'][-1]) * 1000:.0f} ms, "
                    f"pylium {max(samples['pylium'][-1]) * 1000:.0f} ms",
                    flush=True,
                )
            pid = state["pids"]["agent-n1"]
            time.sleep(2)
            before = rss_kib(pid)
            for b in range(0, args.endpoints, args.burst):
                pods.burst([f"b9m{k}" for k in range(b, min(args.endpoints, b + args.burst))])
            time.sleep(2)
            after = rss_kib(pid)
            pods.delete_all()
        finally:
            subprocess.run(["ip", "netns", "del", FLOOR_NS], check=False)
            pods.delete_all()
    p99 = {n: [_lab.percentile(r, 0.99) for r in v] for n, v in samples.items()}
    per_endpoint = (after - before) / args.endpoints
    result = {
        "burst": args.burst,
        "rounds": args.rounds,
        "samples_ms": {n: [[x * 1000 for x in r] for r in v] for n, v in samples.items()},
        "p99_ms": {n: statistics.median(v) * 1000 for n, v in p99.items()},
        "p50_ms": {
            n: statistics.median([x for r in v for x in r]) * 1000 for n, v in samples.items()
        },
        "ratio": _lab.ratio_summary(p99["pylium"], p99["floor"]),
        "rss": {
            "endpoints": args.endpoints,
            "before_kib": before,
            "after_kib": after,
            "kib_per_endpoint": per_endpoint,
            "mib_per_1000_endpoints": per_endpoint * 1000 / 1024,
        },
    }
    ratio = result["ratio"]
    print(
        f"p99 startup pylium / floor = {ratio['median']:.2f} [{ratio['low']:.2f}, "
        f"{ratio['high']:.2f}] (must <= 5, target <= 3); p99 {result['p99_ms']} ms; "
        f"RSS {per_endpoint:.1f} KiB per endpoint (must <= 100, target <= 50)"
    )
    _lab.write_results("pod_startup", result)


if __name__ == "__main__":
    main()
