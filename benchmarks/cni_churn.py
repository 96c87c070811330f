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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pylium.adapters.agentapi import AgentClient

RESULTS = Path(__file__).resolve().parent / "results" / "cni_churn.json"
BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pylium-churn-"))
    env = {**os.environ, "PYLIUM_HOME": str(home)}
    env.pop("PYLIUM_STORE", None)
    lab = "churn"
    subprocess.run(
        [BIN / "pylium", "lab", "up", "--nodes", "1", "--name", lab],
        env=env,
        check=True,
        capture_output=True,
    )
    node_ns = f"pl-{lab}-n1"
    sock = home / "labs" / lab / "n1" / "pylium.sock"
    conf = json.dumps(
        {"cniVersion": "1.0.0", "name": "cilium", "type": "cilium-cni", "socket-path": str(sock)}
    )
    agent = AgentClient(sock)
    created: list[tuple[str, str]] = []
    add_times: list[float] = []
    version_times: list[float] = []

    def cni(command: str, cid: str, netns: str) -> float:
        cni_env = {
            "PATH": env["PATH"],
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={cid}",
        }
        t0 = time.perf_counter()
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{node_ns}", "--", str(BIN / "pylium-cni")],
            input=conf,
            env=cni_env,
            text=True,
            capture_output=True,
            check=True,
        )
        return time.perf_counter() - t0

    try:
        for _ in range(50):
            try:
                if agent.get("/v1/healthz")["datapath"]["state"] == "Ok":
                    break
            except Exception:
                pass
            time.sleep(0.2)
        t_start = time.perf_counter()
        for i in range(args.pods):
            cid, netns = f"churn{i:04d}", f"pl-{lab}-c{i:04d}"
            subprocess.run(["ip", "netns", "add", netns], check=True)
            created.append((cid, netns))
            add_times.append(cni("ADD", cid, netns))
            if i % 10 == 0:
                version_times.append(cni("VERSION", cid, netns))
        elapsed = time.perf_counter() - t_start
        endpoints_live = len(agent.get("/v1/endpoint"))
        for cid, netns in created:
            cni("DEL", cid, netns)
            cni("DEL", cid, netns)  # DEL is idempotent
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
        subprocess.run(
            [BIN / "pylium", "lab", "down", "--name", lab, "--force"],
            env=env,
            capture_output=True,
            check=False,
        )
    result = {
        "pods": args.pods,
        "endpoints_live": endpoints_live,
        "add_p50_ms": 1000 * statistics.median(add_times),
        "add_p99_ms": 1000 * percentile(add_times, 0.99),
        "version_p50_ms": 1000 * statistics.median(version_times),
        "pods_per_second": args.pods / elapsed,
        "leftovers_after_delete": leftovers,
    }
    result["add_p50_over_plugin_start"] = result["add_p50_ms"] / result["version_p50_ms"]
    for key, value in result.items():
        print(f"{key:<28} {value if not isinstance(value, float) else round(value, 2)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    if endpoints_live != args.pods or any(leftovers.values()):
        sys.exit("churn left state behind or lost endpoints")


if __name__ == "__main__":
    main()
