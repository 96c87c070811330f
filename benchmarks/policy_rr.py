"""Per-packet cost of policy size: TCP request/response rate between two pods on one node when
the server endpoint's policy map holds about 10,000 entries, against the same with one rule
(target: ratio at least 0.95). Rounds alternate the two policies (A B A B ...), medians
reported.

The client and server are a small C program (``benchmarks/tools/tcp_rr.c``, built here with
``cc``), one byte each way with TCP_NODELAY, like netperf's TCP_RR, the
client pinned to CPU0 and the server to CPU1. The big policy allows the
client's identity on 10,000 TCP ports (250 rules of 40 ports, each port a /16 entry), the RR
port among them; the small one allows just that port.
Writes ``benchmarks/results/policy_rr.json``. Run as root:
``.venv/bin/python benchmarks/policy_rr.py [--rounds 5] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import _lab

from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.model import codec

LAB = "benchrr"
RR_PORT = 5001


def policy(ports: list[int]) -> Any:
    rules = [
        {
            "fromEndpoints": [{"matchLabels": {"app": "client"}}],
            "toPorts": [
                {"ports": [{"port": str(p), "protocol": "TCP"} for p in ports[i : i + 40]]}
            ],
        }
        for i in range(0, len(ports), 40)
    ]
    return codec.validate(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "rr", "namespace": "default"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "server"}}, "ingress": rules},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    big_ports = [RR_PORT, *[p for p in range(10000, 20000) if p != RR_PORT][:9999]]
    variants = {"rules_10000": policy(big_ports), "rules_1": policy([RR_PORT])}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    entries: dict[str, int] = {}
    with _lab.lab(LAB, 1) as lab:
        binary = _lab.build_tcp_rr(lab.home)
        server_cmd = ["taskset", "-c", _lab.SERVER_CPU, *_lab.tcp_rr_server(binary, RR_PORT)]
        server = lab.pod("server", "n1", labels="app=server", argv=server_cmd)
        client_ns = lab.pod("client", "n1", labels="app=client")["netns"]
        store = open_store(lab.state()["store_url"])
        client = ResourceClient(store)
        server_ep = client.get("CiliumEndpoint", "server", "default").body["status"]["id"]  # type: ignore[union-attr]
        maps = policy_maps.PolicyMaps.from_pins(lab.bpf_dir("n1"))
        for _ in range(args.rounds):
            for name, body in variants.items():
                client.apply([body])
                want = 10000 if name == "rules_10000" else 1
                deadline = time.monotonic() + 60
                while True:
                    current = maps.read(server_ep)
                    n = len([k for k in (current.entries if current else {}) if k.proto == 6])
                    if n == want:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name}: map holds {n} TCP entries, expected {want}")
                    time.sleep(0.05)
                entries[name] = len(current.entries) if current else 0
                samples[name].append(
                    _lab.tcp_rr(binary, client_ns, server["ip"], RR_PORT, args.seconds)
                )
        store.close()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    ratio = medians["rules_10000"] / medians["rules_1"]
    for name, values in samples.items():
        print(
            f"{name:<12} {entries[name]:>6} entries  median {medians[name]:9.0f} trans/s  "
            f"{[round(v) for v in values]}"
        )
    print(f"10,000 rules / 1 rule = {ratio:.3f} (target >= 0.95)")
    _lab.write_results(
        "policy_rr",
        {
            "samples_tps": samples,
            "median_tps": medians,
            "map_entries": entries,
            "ratio": ratio,
            "ratio_interval": _lab.ratio_summary(samples["rules_10000"], samples["rules_1"]),
        },
    )


if __name__ == "__main__":
    main()
