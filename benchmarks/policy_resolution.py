"""Policy resolution cost in the core the agents run (no I/O): 1,000 CiliumNetworkPolicies over
5,000 identities, for the 100 endpoints of one node.

- ``full``: everything from scratch, as an agent does at start: parse the policy objects into
  a repository, build the selector cache over every identity, resolve each local endpoint and
  compute its policy-map state;
- ``incremental``: one policy changes (its peer label), as on ``pylium apply``: the repository
  replaces that object's rules, and the endpoints it selects are resolved again (what the agent
  must redo; the selector cache keeps the other selections).

Reports medians of interleaved rounds and their ratio (incremental / full), and writes
``benchmarks/results/policy_resolution.json``.
Run: ``.venv/bin/python benchmarks/policy_resolution.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from pylium.core.policy.mapstate import compute_map_state
from pylium.core.policy.repository import load_objects
from pylium.core.policy.resolve import PolicyConfig, Subject
from pylium.core.policy.selectorcache import SelectorCache
from pylium.model import codec

RESULTS = Path(__file__).resolve().parent / "results" / "policy_resolution.json"
POLICIES, IDENTITIES, ENDPOINTS, APPS = 1000, 5000, 100, 500


def labels(i: int) -> frozenset[str]:
    return frozenset(
        {
            f"k8s:app=app{i % APPS}",
            f"k8s:tier=t{i % 7}",
            f"k8s:io.kubernetes.pod.namespace=ns{i % 10}",
            "k8s:io.cilium.k8s.policy.cluster=default",
        }
    )


def policy(i: int, peer: int) -> dict[str, Any]:
    body = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": f"p{i}", "namespace": f"ns{i % 10}"},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": f"app{i % APPS}"}},
            "ingress": [
                {
                    "fromEndpoints": [{"matchLabels": {"app": f"app{peer % APPS}"}}],
                    "toPorts": [{"ports": [{"port": str(8000 + i % 100), "protocol": "TCP"}]}],
                },
                {"fromEntities": ["host"]},
            ],
            "egress": [
                {
                    "toEndpoints": [
                        {
                            "matchExpressions": [
                                {"key": "tier", "operator": "In", "values": [f"t{i % 7}"]}
                            ]
                        }
                    ],
                    "toPorts": [{"ports": [{"port": "53", "protocol": "UDP"}]}],
                }
            ],
        },
    }
    return codec.validate(body).body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = [policy(i, i + 1) for i in range(POLICIES)]
    identities = {256 + i: labels(i) for i in range(IDENTITIES)}
    local = [
        Subject(
            256 + i * (IDENTITIES // ENDPOINTS), identities[256 + i * (IDENTITIES // ENDPOINTS)]
        )
        for i in range(ENDPOINTS)
    ]
    config = PolicyConfig()
    samples: dict[str, list[float]] = {"full": [], "incremental": []}
    entries = 0
    for r in range(args.rounds):
        start = time.perf_counter()
        repo = load_objects(bodies)
        cache = SelectorCache(identities)
        states = {s.identity: compute_map_state(repo.resolve(s, config), cache) for s in local}
        samples["full"].append(time.perf_counter() - start)
        entries = sum(len(m) for m in states.values())

        changed = policy(r, r + 7)  # p<r> now allows another peer
        start = time.perf_counter()
        repo.apply_object(changed)
        selected = [s for s in local if f"k8s:app=app{r % APPS}" in s.labels]
        for s in selected:
            states[s.identity] = compute_map_state(repo.resolve(s, config), cache)
        samples["incremental"].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    result = {
        "policies": POLICIES,
        "identities": IDENTITIES,
        "endpoints": ENDPOINTS,
        "map_entries_total": entries,
        "samples_s": samples,
        "median_s": medians,
        "incremental_over_full": medians["incremental"] / medians["full"],
    }
    full_ms, incremental_ms = medians["full"] * 1000, medians["incremental"] * 1000
    print(f"full (1000 policies, 5000 identities, 100 endpoints): {full_ms:.0f} ms")
    print(f"incremental (one policy changed): {incremental_ms:.1f} ms")
    print(f"ratio incremental/full: {result['incremental_over_full']:.4f}; entries {entries}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
