"""Store throughput for both backends, with same-run baselines (perf-anchors §8.1 rules).

Measures, per backend (``local`` SQLite file, ``etcd`` started on loopback):

- puts/s: sequential unconditional puts from one client;
- watch replay events/s: a watch from an old revision delivering N stored changes;
- watch live events/s: a watcher thread following a writer doing N puts (end to end:
  first put to last event delivered).

Baselines measured in the same run, interleaved with the tests (A B A B ...):

- ``sqlite_raw``: one INSERT per transaction with the stdlib sqlite3 module on the same
  directory, WAL and synchronous=NORMAL like the store;
- ``etcd_raw``: etcd3gw's own ``put`` against the same etcd server.

Prints a table and writes ``benchmarks/results/store_throughput.json``.
Run: ``.venv/bin/python benchmarks/store_throughput.py [--puts N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from etcd3gw.client import Etcd3Client

from pylium.adapters.store import Store, open_store
from pylium.testing.etcd import EtcdServer, etcd_server

RESULTS = Path(__file__).resolve().parent / "results" / "store_throughput.json"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_puts(store: Store, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        store.put(f"bench/{tag}/{i % 100}", b"x" * 64)
    return rate(n, time.perf_counter() - t0)


def bench_watch_replay(store: Store, n: int, tag: str) -> float:
    start = store.revision() + 1
    for i in range(n):
        store.put(f"replay/{tag}/{i % 100}", b"x" * 64)
    watch = store.watch(f"replay/{tag}/", start_revision=start)
    t0 = time.perf_counter()
    for got, _ in enumerate(watch, start=1):
        if got == n:
            break
    elapsed = time.perf_counter() - t0
    watch.close()
    return rate(n, elapsed)


def bench_watch_live(store: Store, n: int, tag: str) -> float:
    watch = store.watch(f"live/{tag}/", start_revision=store.revision() + 1)
    done = threading.Event()
    t_end = 0.0

    def consume() -> None:
        nonlocal t_end
        for got, _ in enumerate(watch, start=1):
            if got == n:
                t_end = time.perf_counter()
                break
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    t0 = time.perf_counter()
    for i in range(n):
        store.put(f"live/{tag}/{i % 100}", b"x" * 64)
    if not done.wait(120):
        watch.close()
        thread.join()
        raise RuntimeError("watcher did not receive every event within 120 s")
    thread.join()
    watch.close()
    return rate(n, t_end - t0)


def baseline_sqlite(directory: Path, n: int, tag: str) -> float:
    path = directory / f"raw-{tag}.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)")
    t0 = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k/{i % 100}", b"x" * 64))
        conn.execute("COMMIT")
    result = rate(n, time.perf_counter() - t0)
    conn.close()
    return result


def baseline_etcd(server: EtcdServer, n: int, tag: str) -> float:
    client = Etcd3Client(host="127.0.0.1", port=server.client_port, api_path="/v3/")
    t0 = time.perf_counter()
    for i in range(n):
        client.put(f"/raw/{tag}/{i % 100}", "x" * 64)
    result = rate(n, time.perf_counter() - t0)
    client.session.close()
    return result


def run(puts: int, rounds: int, etcd_puts: int) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="pylium-bench-", dir=Path(__file__).parent))
    samples: dict[str, list[float]] = {}

    def sample(name: str, fn: Callable[..., float], *args: object) -> None:
        samples.setdefault(name, []).append(fn(*args))

    try:
        with etcd_server(workdir) as server:
            local = open_store(f"local:{workdir / 'store.sqlite'}")
            etcd = open_store(f"etcd:{server.url}?prefix=/bench")
            try:
                for r in range(rounds):
                    tag = str(r)
                    sample("sqlite_raw puts/s", baseline_sqlite, workdir, puts, tag)
                    sample("local puts/s", bench_puts, local, puts, tag)
                    sample("etcd_raw puts/s", baseline_etcd, server, etcd_puts, tag)
                    sample("etcd puts/s", bench_puts, etcd, etcd_puts, tag)
                    sample("local watch replay ev/s", bench_watch_replay, local, puts, tag)
                    sample("etcd watch replay ev/s", bench_watch_replay, etcd, puts, tag)
                    sample("local watch live ev/s", bench_watch_live, local, puts, tag)
                    sample("etcd watch live ev/s", bench_watch_live, etcd, etcd_puts, tag)
            finally:
                local.close()
                etcd.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {
        "local puts / sqlite_raw puts": medians["local puts/s"] / medians["sqlite_raw puts/s"],
        "etcd puts / etcd_raw puts": medians["etcd puts/s"] / medians["etcd_raw puts/s"],
        "etcd puts / sqlite_raw puts": medians["etcd puts/s"] / medians["sqlite_raw puts/s"],
        "local watch live / local puts": medians["local watch live ev/s"] / medians["local puts/s"],
        "etcd watch live / etcd puts": medians["etcd watch live ev/s"] / medians["etcd puts/s"],
    }
    return {
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "params": {"puts": puts, "etcd_puts": etcd_puts, "rounds": rounds, "value_bytes": 64},
        "samples": samples,
        "median": medians,
        "ratios": ratios,
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--puts", type=int, default=2000, help="puts per local sample")
    parser.add_argument("--etcd-puts", type=int, default=1000, help="puts per etcd sample")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    args = parser.parse_args()
    report = run(args.puts, args.rounds, args.etcd_puts)

    medians = report["median"]
    samples = report["samples"]
    assert isinstance(medians, dict) and isinstance(samples, dict)
    print(f"{'measure':<28} {'median':>10}   samples")
    for name, value in medians.items():
        spread = ", ".join(f"{v:.0f}" for v in samples[name])
        print(f"{name:<28} {value:>10.0f}   [{spread}]")
    print()
    ratios = report["ratios"]
    assert isinstance(ratios, dict)
    for name, value in ratios.items():
        print(f"{name:<34} {value:>6.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
