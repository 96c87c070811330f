"""Pod-to-pod TCP throughput across two nodes, per routing mode: pylium against the same
topology built with plain kernel devices and routing, no eBPF, measured in the same run,
interleaved (A B A B ...), iperf3 single stream.

Topologies (all inside namespaces this script creates and removes):

- pylium vxlan: ``pylium lab up --nodes 2`` (eBPF + VXLAN with the identity in the VNI) and a
  pod on each node (``pylium lab pod run``);
- pylium native: the same with ``routingMode=native``, ``autoDirectNodeRoutes=true``;
- kernel vxlan: a fabric bridge, two node namespaces with ``eth0`` on it and a static
  ``vxlan0`` (id 42, UDP 8472) to each other, one pod namespace per node behind a veth, routes
  ``remote pod subnet via the peer's vxlan address``, ``ip_forward=1``; pod MTU 1450;
- kernel native: the same without ``vxlan0``: ``remote pod subnet via the peer node's eth0
  address``; pod MTU 1500.

Prints the medians and the ratio, writes ``benchmarks/results/datapath_throughput.json``.
Run as root: ``.venv/bin/python benchmarks/datapath_throughput.py [--mode vxlan|native|both]
[--rounds 3] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "datapath_throughput.json"
PYLIUM = str(Path(sys.executable).with_name("pylium"))
K = "plbk"  # prefix of the kernel baseline's namespaces


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def kernel_up(tunnel: bool) -> str:
    """Build the kernel-only baseline; returns the server pod's IP."""
    mtu = "1450" if tunnel else "1500"
    for ns in ("fab", "n1", "n2", "p1", "p2"):
        sh("ip", "netns", "add", f"{K}-{ns}")
        sh("ip", "-n", f"{K}-{ns}", "link", "set", "lo", "up")
    sh("ip", "-n", f"{K}-fab", "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", f"{K}-fab", "link", "set", "br0", "up")
    for i in (1, 2):
        node, pod, peer = f"{K}-n{i}", f"{K}-p{i}", 3 - i
        sh(
            "ip",
            "-n",
            f"{K}-fab",
            "link",
            "add",
            f"f{i}",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            node,
        )
        sh("ip", "-n", f"{K}-fab", "link", "set", f"f{i}", "master", "br0", "up")
        sh("ip", "-n", node, "addr", "add", f"192.168.199.{i}/24", "dev", "eth0")
        sh("ip", "-n", node, "link", "set", "eth0", "up")
        if tunnel:
            sh(
                "ip",
                "-n",
                node,
                "link",
                "add",
                "vxlan0",
                "type",
                "vxlan",
                "id",
                "42",
                "local",
                f"192.168.199.{i}",
                "remote",
                f"192.168.199.{peer}",
                "dstport",
                "8472",
                "dev",
                "eth0",
            )
            sh("ip", "-n", node, "addr", "add", f"10.198.0.{i}/24", "dev", "vxlan0")
            sh("ip", "-n", node, "link", "set", "vxlan0", "up")
        sh(
            "ip",
            "-n",
            node,
            "link",
            "add",
            "lxc",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod,
        )
        sh("ip", "-n", node, "addr", "add", f"10.199.{i}.1/24", "dev", "lxc")
        sh("ip", "-n", node, "link", "set", "lxc", "mtu", mtu, "up")
        sh("ip", "-n", pod, "addr", "add", f"10.199.{i}.2/24", "dev", "eth0")
        sh("ip", "-n", pod, "link", "set", "eth0", "mtu", mtu, "up")
        sh("ip", "-n", pod, "route", "add", "default", "via", f"10.199.{i}.1")
        via = f"10.198.0.{peer}" if tunnel else f"192.168.199.{peer}"
        sh("ip", "-n", node, "route", "add", f"10.199.{peer}.0/24", "via", via)
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return "10.199.2.2"


def kernel_down() -> None:
    for ns in ("p1", "p2", "n1", "n2", "fab"):
        subprocess.run(["ip", "netns", "del", f"{K}-{ns}"], check=False, capture_output=True)


def iperf(server_ns: str, client_ns: str, server_ip: str, seconds: int) -> float:
    server = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{server_ns}", "iperf3", "-s", "-1", "-B", server_ip],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        out = subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{client_ns}",
                "iperf3",
                "-c",
                server_ip,
                "-t",
                str(seconds),
                "-J",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        )
        return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        server.wait(timeout=30)


NATIVE = (
    "--set",
    "routingMode=native",
    "--set",
    "ipv4NativeRoutingCIDR=10.0.0.0/8",
    "--set",
    "autoDirectNodeRoutes=true",
)


def measure(mode: str, rounds: int, seconds: int) -> dict[str, list[float]]:
    """Interleaved samples of the kernel baseline and pylium in one routing mode."""
    home = tempfile.mkdtemp(prefix="pylium-bench-")
    env = {**os.environ, "PYLIUM_HOME": home}
    env.pop("PYLIUM_STORE", None)

    def pylium(*cmd: str) -> None:
        done = subprocess.run([PYLIUM, *cmd], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"pylium {' '.join(cmd)} failed: {done.stderr.strip()}")

    samples: dict[str, list[float]] = {f"kernel_{mode}": [], f"pylium_{mode}": []}
    try:
        kernel_ip = kernel_up(tunnel=mode == "vxlan")
        pylium(
            "lab", "up", "--nodes", "2", "--name", "bench", *(NATIVE if mode == "native" else ())
        )
        pylium("lab", "pod", "run", "client", "--node", "n1", "--name", "bench")
        pylium("lab", "pod", "run", "server", "--node", "n2", "--name", "bench")
        time.sleep(2)  # n1 learns the server's endpoint
        pods = json.loads((Path(home) / "labs" / "bench" / "lab.json").read_text())["pods"]
        server, client = pods["default/server"], pods["default/client"]
        for _ in range(rounds):
            samples[f"kernel_{mode}"].append(iperf(f"{K}-p2", f"{K}-p1", kernel_ip, seconds))
            samples[f"pylium_{mode}"].append(
                iperf(server["netns"], client["netns"], server["ip"], seconds)
            )
    finally:
        subprocess.run(
            [PYLIUM, "lab", "down", "--name", "bench", "--force"],
            env=env,
            capture_output=True,
            check=False,
        )
        kernel_down()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("vxlan", "native", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    modes = ("vxlan", "native") if args.mode == "both" else (args.mode,)
    samples: dict[str, list[float]] = {}
    for mode in modes:
        samples.update(measure(mode, args.rounds, args.seconds))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {mode: medians[f"pylium_{mode}"] / medians[f"kernel_{mode}"] for mode in modes}
    for name, values in samples.items():
        print(f"{name:<14} median {medians[name]:6.2f} Gbit/s  {[round(v, 2) for v in values]}")
    for mode, ratio in ratios.items():
        print(f"pylium {mode} / kernel {mode} = {ratio:.3f} (goal >= 0.90)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "samples_gbps": samples,
                "median_gbps": medians,
                "ratios": ratios,
                "seconds": args.seconds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
