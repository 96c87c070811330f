"""What the benchmarks share: a ``pylium lab`` of their own (private ``PYLIUM_HOME``, torn down
whatever happens), the kernel-only baseline topology, the C request/response tool, and the
statistics of ``perf-anchors.md`` §8.1 (medians, percentiles, paired ratios with a bootstrap
90 % interval, the met rule).

Every benchmark script imports this module by name (``import _lab``): run as
``.venv/bin/python benchmarks/x.py``, the script's own folder is first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent
PYLIUM = str(BIN / "pylium")
TOOLS = HERE / "tools"

CLIENT_CPU = "0"
SERVER_CPU = "1"
"""§8.1: the client pinned to CPU0, the server to CPU1, baseline and test alike."""


# -- results --------------------------------------------------------------------------------


def write_results(name: str, result: dict[str, Any]) -> Path:
    """``benchmarks/results/<name>.json``, which ``report.py`` reads."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


# -- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bootstrap(
    values: Sequence[float],
    stat: Callable[[Sequence[float]], float] = statistics.median,
    *,
    level: float = 0.90,
    resamples: int = 2000,
    seed: int = 8,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (seeded: the same samples give the same
    interval)."""
    rnd = random.Random(seed)
    n = len(values)
    stats = sorted(stat([values[rnd.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1 - level) / 2
    return stats[int(tail * (resamples - 1))], stats[int((1 - tail) * (resamples - 1))]


def ratio_summary(test: Sequence[float], base: Sequence[float]) -> dict[str, Any]:
    """Paired ratios test[i] / base[i] (one per interleaved round): their median and its
    bootstrap 90 % interval, with the pairs themselves."""
    if len(test) != len(base) or not test:
        raise ValueError(f"unpaired samples: {len(test)} test, {len(base)} baseline")
    ratios = [t / b for t, b in zip(test, base, strict=True)]
    low, high = bootstrap(ratios)
    return {"median": statistics.median(ratios), "low": low, "high": high, "pairs": ratios}


def met(summary: dict[str, Any], goal: float, *, at_least: bool = True) -> bool:
    """§8.1: met when the median ratio is on the right side of the goal and the interval's
    near bound within 0.05 of it (a "<=" goal mirrors the rule)."""
    if at_least:
        return bool(summary["median"] >= goal and summary["low"] >= goal - 0.05)
    return bool(summary["median"] <= goal and summary["high"] <= goal + 0.05)


# -- processes ------------------------------------------------------------------------------


def sh(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, **kw)


def in_netns(netns: str, *argv: str, cpu: str | None = None) -> list[str]:
    """``argv`` run in a network namespace, pinned to ``cpu`` when given."""
    pin = ["taskset", "-c", cpu] if cpu is not None else []
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *pin, *argv]


class Servers:
    """Background server processes this benchmark started (stopped by PID)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str]) -> None:
        self.procs.append(
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        time.sleep(0.2)
        if self.procs[-1].poll() is not None:
            raise SystemExit(f"server exited at start: {' '.join(argv)}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)
        self.procs = []


# -- the request/response tool --------------------------------------------------------------


def build_tcp_rr(workdir: Path) -> Path:
    """``tools/tcp_rr.c`` compiled with -O2 into ``workdir``."""
    binary = workdir / "tcp_rr"
    sh("cc", "-O2", "-o", str(binary), str(TOOLS / "tcp_rr.c"))
    return binary


def tcp_rr_server(binary: Path, port: int, workers: int = 1) -> list[str]:
    return [str(binary), "server", str(port), str(workers)]


def tcp_rr(
    binary: Path,
    netns: str,
    ip: str,
    port: int,
    seconds: float,
    *,
    mode: str = "rr",
    procs: int = 1,
    cpu: str | None = CLIENT_CPU,
) -> float:
    """Transactions per second of one run: ``rr`` (one connection, one byte each way) or
    ``crr`` (connect, one byte each way, close; ``procs`` client processes)."""
    argv = [str(binary), "client" if mode == "rr" else "crr", ip, str(port), str(seconds)]
    if mode == "crr":
        argv.append(str(procs))
    out = sh(*in_netns(netns, *argv, cpu=cpu), capture_output=True, timeout=seconds + 60)
    return float(out.stdout)


# -- a pylium lab ---------------------------------------------------------------------------


class Lab:
    """A ``pylium lab`` in a private ``PYLIUM_HOME`` (SQLite store unless extra flags say)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.home = Path(tempfile.mkdtemp(prefix=f"pylium-{name}-"))
        self.env = {**os.environ, "PYLIUM_HOME": str(self.home)}
        self.env.pop("PYLIUM_STORE", None)

    def run(self, *cmd: str) -> str:
        done = subprocess.run([PYLIUM, *cmd], env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"pylium {' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout

    def up(self, nodes: int, *extra: str) -> None:
        self.run("lab", "up", "--nodes", str(nodes), "--name", self.name, *extra)

    def pod(
        self, name: str, node: str, labels: str | None = None, argv: Sequence[str] = ()
    ) -> dict[str, str]:
        """``pylium lab pod run`` (``argv``: the pod's command); returns the pod's lab record
        (netns, IP, ...)."""
        more = ["--labels", labels] if labels else []
        command = ["--", *argv] if argv else []
        self.run("lab", "pod", "run", name, "--node", node, "--name", self.name, *more, *command)
        return dict(self.state()["pods"][f"default/{name}"])

    @property
    def dir(self) -> Path:
        return self.home / "labs" / self.name

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "lab.json").read_text()))

    def bpf_dir(self, node: str) -> Path:
        return Path(f"/sys/fs/bpf/pylium-lab-{self.name}/{node}")

    def down(self) -> None:
        subprocess.run(
            [PYLIUM, "lab", "down", "--name", self.name, "--force"],
            env=self.env,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)


@contextmanager
def lab(name: str, nodes: int, *extra: str) -> Iterator[Lab]:
    """A lab that is up inside the block and down after it, also on error."""
    the_lab = Lab(name)
    try:
        the_lab.up(nodes, *extra)
        yield the_lab
    finally:
        the_lab.down()


NATIVE = (
    "--set",
    "routingMode=native",
    "--set",
    "ipv4NativeRoutingCIDR=10.0.0.0/8",
    "--set",
    "autoDirectNodeRoutes=true",
)
"""``pylium lab up`` flags for native routing (B1, B2, B3)."""


# -- the kernel-only baseline ---------------------------------------------------------------


NODE_IP = {1: "192.168.199.1", 2: "192.168.199.2"}
POD_IP = {1: "10.199.1.2", 2: "10.199.2.2"}


@dataclass(frozen=True)
class KernelTopology:
    """The lab's shape with plain kernel devices and routes, no eBPF, no netfilter rules: a
    fabric bridge (the lab's wire), nodes ``<prefix>-n1``/``-n2`` with ``eth0`` on it at
    192.168.199.1/.2, a pod ``<prefix>-p1``/``-p2`` behind each (10.199.N.2), routed natively
    or, with ``tunnel``, over a static VXLAN (id 42, UDP 8472, pod MTU 1450)."""

    prefix: str
    tunnel: bool = False

    def ns(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def up(self) -> None:
        mtu = "1450" if self.tunnel else "1500"
        for short in ("fab", "n1", "n2", "p1", "p2"):
            sh("ip", "netns", "add", self.ns(short))
            sh("ip", "-n", self.ns(short), "link", "set", "lo", "up")
        fab = self.ns("fab")
        sh("ip", "-n", fab, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", fab, "link", "set", "br0", "up")
        for i in (1, 2):
            node, pod, peer = self.ns(f"n{i}"), self.ns(f"p{i}"), 3 - i
            veth = ("type", "veth", "peer", "name", "eth0", "netns")
            sh("ip", "-n", fab, "link", "add", f"f{i}", *veth, node)
            sh("ip", "-n", fab, "link", "set", f"f{i}", "master", "br0", "up")
            sh("ip", "-n", node, "addr", "add", f"{NODE_IP[i]}/24", "dev", "eth0")
            sh("ip", "-n", node, "link", "set", "eth0", "up")
            via = NODE_IP[peer]
            if self.tunnel:
                sh(
                    *("ip", "-n", node, "link", "add", "vxlan0", "type", "vxlan", "id", "42"),
                    *("local", NODE_IP[i], "remote", NODE_IP[peer]),
                    *("dstport", "8472", "dev", "eth0"),
                )
                sh("ip", "-n", node, "addr", "add", f"10.198.0.{i}/24", "dev", "vxlan0")
                sh("ip", "-n", node, "link", "set", "vxlan0", "up")
                via = f"10.198.0.{peer}"
            sh("ip", "-n", node, "link", "add", "lxc", *veth, pod)
            sh("ip", "-n", node, "addr", "add", f"10.199.{i}.1/24", "dev", "lxc")
            sh("ip", "-n", node, "link", "set", "lxc", "mtu", mtu, "up")
            sh("ip", "-n", pod, "addr", "add", f"{POD_IP[i]}/24", "dev", "eth0")
            sh("ip", "-n", pod, "link", "set", "eth0", "mtu", mtu, "up")
            sh("ip", "-n", pod, "route", "add", "default", "via", f"10.199.{i}.1")
            sh("ip", "-n", node, "route", "add", f"10.199.{peer}.0/24", "via", via)
            sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def down(self) -> None:
        for short in ("p1", "p2", "n1", "n2", "fab"):
            subprocess.run(["ip", "netns", "del", self.ns(short)], check=False, capture_output=True)


@contextmanager
def kernel_topology(prefix: str, *, tunnel: bool = False) -> Iterator[KernelTopology]:
    topo = KernelTopology(prefix, tunnel)
    try:
        topo.up()
        yield topo
    finally:
        topo.down()


# -- CNI, as a container runtime calls it ---------------------------------------------------


def cni_conf(socket: Path) -> str:
    """The network configuration pylium-cni reads on stdin, pointed at an agent's socket."""
    return json.dumps(
        {"cniVersion": "1.0.0", "name": "cilium", "type": "cilium-cni", "socket-path": str(socket)}
    )


def cni(node_ns: str, conf: str, command: str, cid: str, netns: str) -> float:
    """``pylium-cni`` for ``command`` on container ``cid`` (pod name = ``cid``, namespace
    ``default``), executed in the node's namespace as a runtime does; seconds from exec to
    exit. SystemExit naming the call if it fails."""
    env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid}",
    }
    start = time.perf_counter()
    done = subprocess.run(
        ["nsenter", f"--net=/run/netns/{node_ns}", "--", str(BIN / "pylium-cni")],
        input=conf,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    took = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"CNI {command} {cid} failed ({done.returncode}): {done.stdout}")
    return took


def wait_datapath(agent: Any, timeout: float = 60) -> None:
    """Until the agent's ``/v1/healthz`` says its datapath is up (pods can be added)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if agent.get("/v1/healthz")["datapath"]["state"] == "Ok":
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit("the agent's datapath did not come up")
