"""Benchmarks B2 and B3: pod-to-pod latency (TCP_RR) and new-connection rate (TCP_CRR, one and
two client processes) across two nodes, pylium in native routing ÷ node-to-node over the same
kind of wire with no eBPF and no netfilter rules, interleaved in the same run.

- pylium: ``pylium lab up --nodes 2`` with native routing, a pod on each node (``p1`` on n1,
  ``p2`` on n2), the client in ``p1``, the server in ``p2``;
- baseline: :class:`_lab.KernelTopology` (fabric bridge, node namespaces at 192.168.199.1/.2),
  the client in its ``n1`` and the server in its ``n2``.

The tool is ``tools/tcp_rr.c`` (one byte each way, TCP_NODELAY; CRR closes with an RST so that
no TIME_WAIT exhausts the ports). One-process runs pin the client to CPU0 and the server to
CPU1; two-process runs use a two-worker server and leave both unpinned (both cores). Each
round runs every test on the baseline, then on pylium (A B A B ...); per-round ratios give
the median and its bootstrap 90 % interval. Writes ``benchmarks/results/pod_rr.json``.
Run as root: ``.venv/bin/python benchmarks/pod_rr.py [--rounds 5] [--seconds 5]
[--set KEY=VALUE ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _lab

RR_PORT, CRR2_PORT = 5001, 5002
TESTS = {"rr": ("rr", 1), "crr_1": ("crr", 1), "crr_2": ("crr", 2)}
GOALS = {"rr": (0.85, 0.93), "crr_1": (0.80, 0.92), "crr_2": (0.80, 0.92)}
"""(must, target) per test, from perf-anchors §8.2 B2/B3."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more Helm values for the lab (e.g. hubble.enabled=false, to see Hubble's share)",
    )
    args = parser.parse_args()
    extra = [flag for value in args.set for flag in ("--set", value)]
    samples: dict[str, dict[str, list[float]]] = {
        t: {"node_to_node": [], "pod_to_pod": []} for t in TESTS
    }
    servers = _lab.Servers()
    with (
        _lab.kernel_topology("benchk") as topo,
        _lab.lab("benchrr2", 2, *_lab.NATIVE, *extra) as lab,
    ):
        try:
            binary = _lab.build_tcp_rr(lab.home)
            client = lab.pod("client", "n1")
            server = lab.pod("server", "n2")
            targets = {
                "node_to_node": (topo.ns("n1"), topo.ns("n2"), _lab.NODE_IP[2]),
                "pod_to_pod": (client["netns"], server["netns"], server["ip"]),
            }
            for _, server_ns, _ in targets.values():
                rr_server = _lab.tcp_rr_server(binary, RR_PORT)
                servers.start(_lab.in_netns(server_ns, *rr_server, cpu=_lab.SERVER_CPU))
                servers.start(_lab.in_netns(server_ns, *_lab.tcp_rr_server(binary, CRR2_PORT, 2)))
            time.sleep(2)  # n1 learns the server's endpoint
            for client_ns, _, ip in targets.values():  # warm-up: ARP, conntrack, caches
                _lab.tcp_rr(binary, client_ns, ip, RR_PORT, 0.5)
            for r in range(args.rounds):
                for test, (mode, procs) in TESTS.items():
                    for path, (client_ns, _, ip) in targets.items():
                        samples[test][path].append(
                            _lab.tcp_rr(
                                binary,
                                client_ns,
                                ip,
                                RR_PORT if procs == 1 else CRR2_PORT,
                                args.seconds,
                                mode=mode,
                                procs=procs,
                                cpu=_lab.CLIENT_CPU if procs == 1 else None,
                            )
                        )
                last = {t: {p: v[-1] for p, v in s.items()} for t, s in samples.items()}
                print(f"round {r + 1}: {last}", flush=True)
        finally:
            servers.stop()
    result: dict[str, object] = {"rounds": args.rounds, "seconds": args.seconds, "set": args.set}
    for test, by_path in samples.items():
        summary = _lab.ratio_summary(by_path["pod_to_pod"], by_path["node_to_node"])
        must, target = GOALS[test]
        result[test] = {
            "samples_tps": by_path,
            "median_tps": {p: statistics.median(v) for p, v in by_path.items()},
            "ratio": summary,
            "must": must,
            "target": target,
            "met_must": _lab.met(summary, must),
            "met_target": _lab.met(summary, target),
        }
        print(
            f"{test:<6} pod/node = {summary['median']:.3f} [{summary['low']:.3f}, "
            f"{summary['high']:.3f}] (must >= {must}, target >= {target}); "
            f"median {statistics.median(by_path['pod_to_pod']):.0f} vs "
            f"{statistics.median(by_path['node_to_node']):.0f} trans/s"
        )
    _lab.write_results("pod_rr", result)


if __name__ == "__main__":
    main()
