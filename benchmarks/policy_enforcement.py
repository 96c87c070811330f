"""Time from applying a policy to its enforcement in the datapath, in a one-node lab.

Each round changes a CiliumNetworkPolicy selecting the server pod (a new allowed port) through
the same resource client ``pylium apply`` uses, then polls the server endpoint's pinned BPF
policy map until the new entry is there: the agent has been woken by its store watch,
recomputed the policy and written the map. The baseline, measured interleaved in the same
run, is the store's own floor: a put until a watch on that prefix delivers the event. The CLI's
own start-up (about 0.3 s of Python imports) comes on top for ``pylium apply`` and is not
counted.

Prints p50/p99 of both and writes ``benchmarks/results/policy_enforcement.json``.
Run as root: ``.venv/bin/python benchmarks/policy_enforcement.py [--rounds 100]``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import _lab

from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Watch
from pylium.adapters.store.factory import open_store
from pylium.core.policy.mapstate import PolicyKey
from pylium.core.policy.peers import Direction
from pylium.model import codec
from pylium.model.resource import Resource

LAB = "benchpol"


def policy(port: int) -> Resource:
    return codec.validate(
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "bench", "namespace": "default"},
            "spec": {
                "endpointSelector": {"matchLabels": {"app": "server"}},
                "ingress": [
                    {
                        "fromEndpoints": [{"matchLabels": {"app": "client"}}],
                        "toPorts": [{"ports": [{"port": str(port), "protocol": "TCP"}]}],
                    }
                ],
            },
        }
    )


def follow(watch: Watch, seen: threading.Event) -> None:
    for _ in watch:
        seen.set()
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"apply_to_map": [], "store_put_to_watch": []}
    with _lab.lab(LAB, 1) as lab:
        lab.pod("server", "n1", labels="app=server")
        lab.pod("client", "n1", labels="app=client")
        store = open_store(lab.state()["store_url"])
        client = ResourceClient(store)
        ceps = {c.name: c.body["status"] for c in client.list("CiliumEndpoint")[0]}
        server_ep, client_id = ceps["server"]["id"], ceps["client"]["identity"]["id"]
        maps = policy_maps.PolicyMaps.from_pins(lab.bpf_dir("n1"))
        for i in range(args.rounds):
            port = 20000 + i
            want = PolicyKey(Direction.INGRESS, client_id, 6, port, 16)
            start = time.perf_counter()
            client.apply([policy(port)])
            while True:
                state_now = maps.read(server_ep)
                if state_now is not None and want in state_now.entries:
                    break
                time.sleep(0.0005)
            samples["apply_to_map"].append(time.perf_counter() - start)

            key = f"bench/watch/{i}"
            seen = threading.Event()
            watch = store.watch(key, start_revision=store.revision() + 1)

            thread = threading.Thread(target=follow, args=(watch, seen), daemon=True)
            thread.start()
            start = time.perf_counter()
            store.put(key, b"x")
            seen.wait(10)
            samples["store_put_to_watch"].append(time.perf_counter() - start)
            watch.close()
            thread.join(5)
        store.close()
    result = {
        name: {
            "p50_ms": statistics.median(v) * 1000,
            "p99_ms": _lab.percentile(v, 0.99) * 1000,
            "samples": len(v),
        }
        for name, v in samples.items()
    }
    result["ratio_p50"] = {  # type: ignore[assignment]
        "apply_to_map / store_put_to_watch": result["apply_to_map"]["p50_ms"]
        / result["store_put_to_watch"]["p50_ms"]
    }
    for name in samples:
        p50, p99 = result[name]["p50_ms"], result[name]["p99_ms"]
        print(f"{name:<20} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    _lab.write_results("policy_enforcement", result)


if __name__ == "__main__":
    main()
