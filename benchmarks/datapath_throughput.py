"""Pod-to-pod TCP throughput across two nodes, per routing mode: pylium against the same
topology built with plain kernel devices and routing, no eBPF, measured in the same run,
interleaved (A B A B ...), iperf3 single stream.

Topologies (all inside namespaces this script creates and removes; the kernel ones are
:class:`_lab.KernelTopology`):

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
[--rounds 3] [--seconds 5] [--set KEY=VALUE ...]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import _lab

K = "plbk"  # prefix of the kernel baseline's namespaces


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


def measure(
    mode: str, rounds: int, seconds: int, extra: tuple[str, ...] = ()
) -> dict[str, list[float]]:
    """Interleaved samples of the kernel baseline and pylium in one routing mode; ``extra``:
    more ``pylium lab up`` flags."""
    samples: dict[str, list[float]] = {f"kernel_{mode}": [], f"pylium_{mode}": []}
    with (
        _lab.kernel_topology(K, tunnel=mode == "vxlan") as topo,
        _lab.lab("bench", 2, *(_lab.NATIVE if mode == "native" else ()), *extra) as lab,
    ):
        client = lab.pod("client", "n1")
        server = lab.pod("server", "n2")
        time.sleep(2)  # n1 learns the server's endpoint
        for _ in range(rounds):
            samples[f"kernel_{mode}"].append(
                iperf(topo.ns("p2"), topo.ns("p1"), _lab.POD_IP[2], seconds)
            )
            samples[f"pylium_{mode}"].append(
                iperf(server["netns"], client["netns"], server["ip"], seconds)
            )
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("vxlan", "native", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more Helm values for the lab (e.g. bpf.hostLegacyRouting=true)",
    )
    args = parser.parse_args()
    extra = tuple(flag for value in args.set for flag in ("--set", value))
    modes = ("vxlan", "native") if args.mode == "both" else (args.mode,)
    samples: dict[str, list[float]] = {}
    for mode in modes:
        samples.update(measure(mode, args.rounds, args.seconds, extra))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {mode: medians[f"pylium_{mode}"] / medians[f"kernel_{mode}"] for mode in modes}
    for name, values in samples.items():
        print(f"{name:<14} median {medians[name]:6.2f} Gbit/s  {[round(v, 2) for v in values]}")
    for mode, ratio in ratios.items():
        print(f"pylium {mode} / kernel {mode} = {ratio:.3f} (goal >= 0.90)")
    _lab.write_results(
        "datapath_throughput",
        {
            "samples_gbps": samples,
            "median_gbps": medians,
            "ratios": ratios,
            "ratio_intervals": {
                m: _lab.ratio_summary(samples[f"pylium_{m}"], samples[f"kernel_{m}"]) for m in modes
            },
            "seconds": args.seconds,
            "set": args.set,
        },
    )


if __name__ == "__main__":
    main()
