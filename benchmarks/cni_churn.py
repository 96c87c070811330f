"""CNI ADD latency (p50, p99) and pods per second on one node, then a full DEL churn that must
leave nothing behind (veths, endpoints, IPs, CiliumEndpoints).

The script is the container runtime: it creates each pod namespace and executes
``pylium-cni`` over the CNI wire protocol inside the node's namespace, timing ADD from exec to
result. Baseline in the same run: executing ``pylium-cni`` for VERSION (the cost of starting
the plugin process, which every ADD pays).

Run as root: ``.venv/bin/python benchmarks/cni_churn.py [--pods 200]``; writes
``benchmarks/results/cni_churn.json``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import _lab

from pylium.adapters.agentapi import AgentClient

LAB = "churn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    created: list[tuple[str, str]] = []
    add_times: list[float] = []
    version_times: list[float] = []
    with _lab.lab(LAB, 1) as lab:
        node_ns = lab.state()["nodes"]["n1"]["netns"]
        sock = lab.dir / "n1" / "pylium.sock"
        conf = _lab.cni_conf(sock)
        agent = AgentClient(sock)
        _lab.wait_datapath(agent)
        t_start = time.perf_counter()
        try:
            for i in range(args.pods):
                cid, netns = f"churn{i:04d}", f"pl-{LAB}-c{i:04d}"
                subprocess.run(["ip", "netns", "add", netns], check=True)
                created.append((cid, netns))
                add_times.append(_lab.cni(node_ns, conf, "ADD", cid, netns))
                if i % 10 == 0:
                    version_times.append(_lab.cni(node_ns, conf, "VERSION", cid, netns))
            elapsed = time.perf_counter() - t_start
            endpoints_live = len(agent.get("/v1/endpoint"))
            for cid, netns in created:
                _lab.cni(node_ns, conf, "DEL", cid, netns)
                _lab.cni(node_ns, conf, "DEL", cid, netns)  # DEL is idempotent
                subprocess.run(["ip", "netns", "del", netns], check=True)
            leftovers = {
                "endpoints": len(agent.get("/v1/endpoint")),
                "ips_used": agent.get("/v1/ipam")["used"] - 1,  # the router keeps its IP
                "lxc_links": subprocess.run(
                    ["ip", "-n", node_ns, "-o", "link"], capture_output=True, text=True, check=True
                ).stdout.count(": lxc"),
            }
        finally:
            for _, netns in created:
                subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
    result = {
        "pods": args.pods,
        "endpoints_live": endpoints_live,
        "add_p50_ms": 1000 * statistics.median(add_times),
        "add_p99_ms": 1000 * _lab.percentile(add_times, 0.99),
        "version_p50_ms": 1000 * statistics.median(version_times),
        "pods_per_second": args.pods / elapsed,
        "leftovers_after_delete": leftovers,
    }
    result["add_p50_over_plugin_start"] = result["add_p50_ms"] / result["version_p50_ms"]
    for key, value in result.items():
        print(f"{key:<28} {value if not isinstance(value, float) else round(value, 2)}")
    _lab.write_results("cni_churn", result)
    if endpoints_live != args.pods or any(leftovers.values()):
        sys.exit("churn left state behind or lost endpoints")


if __name__ == "__main__":
    main()
