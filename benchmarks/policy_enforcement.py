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
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Watch
from pylium.adapters.store.factory import open_store
from pylium.core.policy.mapstate import PolicyKey
from pylium.core.policy.peers import Direction
from pylium.model import codec
from pylium.model.resource import Resource

RESULTS = Path(__file__).resolve().parent / "results" / "policy_enforcement.json"
PYLIUM = str(Path(sys.executable).with_name("pylium"))
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="pylium-bench-")
    env = {**os.environ, "PYLIUM_HOME": home}
    env.pop("PYLIUM_STORE", None)

    def pylium(*cmd: str) -> str:
        done = subprocess.run([PYLIUM, *cmd], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"pylium {' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout

    samples: dict[str, list[float]] = {"apply_to_map": [], "store_put_to_watch": []}
    try:
        pylium("lab", "up", "--nodes", "1", "--name", LAB)
        pylium(
            "lab", "pod", "run", "server", "--node", "n1", "--labels", "app=server", "--name", LAB
        )
        pylium(
            "lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client", "--name", LAB
        )
        state = json.loads((Path(home) / "labs" / LAB / "lab.json").read_text())
        store = open_store(state["store_url"])
        client = ResourceClient(store)
        ceps = {c.name: c.body["status"] for c in client.list("CiliumEndpoint")[0]}
        server_ep, client_id = ceps["server"]["id"], ceps["client"]["identity"]["id"]
        maps = policy_maps.PolicyMaps.from_pins(Path(f"/sys/fs/bpf/pylium-lab-{LAB}/n1"))
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
    finally:
        subprocess.run(
            [PYLIUM, "lab", "down", "--name", LAB, "--force"],
            env=env,
            capture_output=True,
            check=False,
        )
    result = {
        name: {
            "p50_ms": statistics.median(v) * 1000,
            "p99_ms": percentile(v, 0.99) * 1000,
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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
