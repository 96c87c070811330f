"""Benchmark B6: service programming latency in the control plane.

- (a) ``change``: two one-node labs run side by side, one holding 100 Services, the other
  30,000 (each a ClusterIP with one backend through its own EndpointSlice, written to the
  lab's store as ``pylium apply`` writes them). Each sample writes one more Service with its
  EndpointSlice and times until the agent has put its master entry in the node's pinned
  service map (read back with ``bpf_map_lookup_elem``): store watch, the agent's sync (every
  0.5 s after a change), translation and map writes. Rounds alternate the labs (A B A B ...),
  several changes each; the ratio per round is the 30,000-lab's p99 (nearest rank) ÷ the
  100-lab's. Goal: ratio <= 2.0 (must) / 1.3 (target), absolute p99 <= 250 / 100 ms.
- (b) ``resync``: the agent's services engine (:class:`pylium.agent.services.ServiceManager`)
  doing its first full sync of 10,000 such Services from a SQLite store into fresh pinned
  maps (list, parse, translate, plan, map writes) ÷ ``iptables-restore`` of the equivalent
  kube-proxy ruleset (``socket_lb.iptables_rules``) into a fresh namespace; interleaved.
  Goal: ratio <= 1.0 (must) / 0.2 (target).

Writes ``benchmarks/results/service_programming.json``. Run as root:
``.venv/bin/python benchmarks/service_programming.py [--rounds 5] [--changes 4]
[--large 30000] [--resync 10000] [--skip-change] [--skip-resync]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import _lab
from socket_lb import iptables_rules, service_body, slice_body, vip

from pylium.adapters.maps import lb
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.agent.services import ServiceManager
from pylium.base.errors import PyliumError
from pylium.core.lb.addr import Protocol
from pylium.core.lb.translate import ServiceKey
from pylium.model import codec

SMALL = 100
BATCH = 1000
PROBE = 100_000
"""Index of the first probe Service: above every bulk one."""


def write_services(client: ResourceClient, start: int, stop: int) -> None:
    """Services ``svc-start`` .. ``svc-(stop-1)`` and their slices, in transactions of
    ``BATCH`` objects."""
    for lo in range(start, stop, BATCH // 2):
        docs = []
        for i in range(lo, min(stop, lo + BATCH // 2)):
            docs += [codec.validate(service_body(i)), codec.validate(slice_body(i))]
        client.apply(docs)


def master_key(i: int) -> bytes:
    return lb.encode_service_key(
        ServiceKey(address=ipaddress.IPv4Address(vip(i)), port=80, protocol=Protocol.TCP)
    )


def wait_visible(maps: lb.LBMaps, i: int, timeout: float) -> float:
    """Seconds until ``svc-i``'s master entry is in the map (polled every millisecond)."""
    start = time.perf_counter()
    key = master_key(i)
    while not maps.services.lookup(key):
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"svc-{i} not in the service map after {timeout:.0f} s")
        time.sleep(0.001)
    return time.perf_counter() - start


def open_maps(pins: Path, timeout: float = 120) -> lb.LBMaps:
    """The agent's pinned service maps, once it has loaded bpf_sock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return lb.LBMaps.from_pins(pins)
        except PyliumError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class ServiceLab:
    """A one-node lab and its store holding ``count`` Services."""

    def __init__(self, name: str, count: int) -> None:
        self.lab = _lab.Lab(name)
        self.count = count
        self.next = PROBE
        self.writes: list[float] = []
        """Seconds each change's store transaction took (part of its latency)."""

    def __enter__(self) -> ServiceLab:
        try:
            self.lab.up(1)
            self.store = open_store(self.lab.state()["store_url"])
            self.client = ResourceClient(self.store)
            start = time.perf_counter()
            write_services(self.client, 0, self.count)
            self.maps = open_maps(self.lab.bpf_dir("n1"))
            wait_visible(self.maps, self.count - 1, 1800)
        except BaseException:
            self.lab.down()
            raise
        took = time.perf_counter() - start
        print(f"{self.count} services programmed in {took:.1f} s", flush=True)
        return self

    def change(self) -> float:
        """One new Service and its EndpointSlice, timed to its master map entry."""
        i, self.next = self.next, self.next + 1
        docs = [codec.validate(service_body(i)), codec.validate(slice_body(i))]
        start = time.perf_counter()
        self.client.apply(docs)
        self.writes.append(time.perf_counter() - start)
        return self.writes[-1] + wait_visible(self.maps, i, 600)

    def __exit__(self, *_: object) -> None:
        self.store.close()
        self.lab.down()


def change_latency(rounds: int, changes: int, large: int) -> dict[str, Any]:
    samples: dict[str, list[list[float]]] = {"small": [], "large": []}
    with ExitStack() as stack:
        labs = {
            "small": stack.enter_context(ServiceLab("bench6s", SMALL)),
            "large": stack.enter_context(ServiceLab("bench6l", large)),
        }
        for r in range(rounds):
            for name, the_lab in labs.items():
                samples[name].append([the_lab.change() for _ in range(changes)])
            print(
                f"round {r + 1}: "
                + ", ".join(f"{n} {max(v[-1]) * 1000:.0f} ms" for n, v in samples.items()),
                flush=True,
            )
        writes = {n: statistics.median(the_lab.writes) * 1000 for n, the_lab in labs.items()}
    p99 = {n: [_lab.percentile(r, 0.99) for r in v] for n, v in samples.items()}
    pooled = {n: _lab.percentile([x for r in v for x in r], 0.99) for n, v in samples.items()}
    return {
        "services": {"small": SMALL, "large": large},
        "changes_per_round": changes,
        "samples_ms": {n: [[x * 1000 for x in r] for r in v] for n, v in samples.items()},
        "p99_ms": {n: v * 1000 for n, v in pooled.items()},
        "p50_ms": {
            n: statistics.median([x for r in v for x in r]) * 1000 for n, v in samples.items()
        },
        "store_write_p50_ms": writes,
        "ratio": _lab.ratio_summary(p99["large"], p99["small"]),
    }


@contextmanager
def fresh_bpf_dir(tag: str) -> Iterator[Path]:
    path = Path("/sys/fs/bpf") / tag
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pylium_resync(client: ResourceClient, work: Path, r: int) -> float:
    """The services engine's first sync into fresh maps, in seconds."""
    with fresh_bpf_dir(f"bench6-resync-{r}") as bpf_root:
        manager = ServiceManager(
            client,
            node="n1",
            node_addresses=(),
            bpf_root=bpf_root,
            cgroup_path=work / "no-cgroup",
            socket_lb=False,
            kube_proxy_replacement=False,
        )
        try:
            manager.start()
            start = time.perf_counter()
            if not manager.sync():
                raise SystemExit("the first sync did nothing")
            return time.perf_counter() - start
        finally:
            manager.stop()


def iptables_restore(rules: str) -> float:
    netns = "bench6-ipt"
    _lab.sh("ip", "netns", "add", netns)
    try:
        start = time.perf_counter()
        _lab.sh("ip", "netns", "exec", netns, "iptables-restore", input=rules)
        return time.perf_counter() - start
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def resync(rounds: int, count: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pylium-bench6-"))
    store = open_store(f"local:{work / 'store.sqlite'}")
    try:
        client = ResourceClient(store)
        write_services(client, 0, count)
        rules = iptables_rules(count)
        samples: dict[str, list[float]] = {"pylium": [], "iptables": []}
        for r in range(rounds):
            samples["pylium"].append(pylium_resync(client, work, r))
            samples["iptables"].append(iptables_restore(rules))
            print(
                f"round {r + 1}: { ({k: round(v[-1], 2) for k, v in samples.items()}) }", flush=True
            )
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "services": count,
        "samples_s": samples,
        "median_s": {k: statistics.median(v) for k, v in samples.items()},
        "ratio": _lab.ratio_summary(samples["pylium"], samples["iptables"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changes", type=int, default=4)
    parser.add_argument("--large", type=int, default=30000)
    parser.add_argument("--resync", type=int, default=10000)
    parser.add_argument("--skip-change", action="store_true")
    parser.add_argument("--skip-resync", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"rounds": args.rounds}
    if not args.skip_resync:
        result["resync"] = res = resync(args.rounds, args.resync)
        ratio = res["ratio"]
        print(
            f"(b) resync of {args.resync}: pylium / iptables-restore = {ratio['median']:.2f} "
            f"[{ratio['low']:.2f}, {ratio['high']:.2f}] (must <= 1.0, target <= 0.2); "
            f"{res['median_s']}"
        )
    if not args.skip_change:
        result["change"] = ch = change_latency(args.rounds, args.changes, args.large)
        ratio = ch["ratio"]
        print(
            f"(a) p99 change -> map, {args.large} / {SMALL} services = {ratio['median']:.2f} "
            f"[{ratio['low']:.2f}, {ratio['high']:.2f}] (must <= 2.0, target <= 1.3); "
            f"p99 {ch['p99_ms']} ms"
        )
    _lab.write_results("service_programming", result)


if __name__ == "__main__":
    main()
