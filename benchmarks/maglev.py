"""Benchmark B7: Maglev tables (``pylium.core.lb.maglev``).

- (a) build time: ``lookup_table`` (hashing the backends included) ÷ a C reference of the
  paper's populate loop with the same hashing (``tools/maglev_ref.c``, compiled here with
  ``-O2``), which must produce the very same table (checked by a checksum); interleaved,
  one C run and one Python build per pair, for M = 16381 and 65521, N = 100 and 1000. Both
  sides are timed in CPU time of their own process (``CLOCK_PROCESS_CPUTIME_ID``,
  ``time.process_time``): single-threaded and CPU-bound, so on a shared machine this leaves
  out the time other work holds the core;
- (b) churn: when one of N backends is removed, the share of the M slots whose owner changes
  among the *surviving* backends (ideal 0), worst and mean over several removed backends;
- (c) balance: the most slots any backend holds ÷ the mean (M / N).

(b) and (c) are the paper's regime N <= M/100 (M = 16381 and 65521 with N = 100); (c) is
also given for N = 1000 as information. Writes ``benchmarks/results/maglev.json``. Run:
``.venv/bin/python benchmarks/maglev.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import _lab

from pylium.core.lb.maglev import MaglevBackend, backend_hash_string, lookup_table, maglev_config

BUILDS = ((16381, 1000), (16381, 100), (65521, 1000), (65521, 100))
REGIME = ((16381, 100), (65521, 100))
REMOVALS = 10


def backends(n: int) -> list[MaglevBackend]:
    """N backends 10.0.x.y:8080/TCP, IDs in table order (sorted hash strings) as the C
    reference numbers them."""
    strings = sorted(
        backend_hash_string(ipaddress.IPv4Address(0x0A000000 + 2 + i), 8080, "TCP")
        for i in range(n)
    )
    return [MaglevBackend(id=i + 1, hash_string=s) for i, s in enumerate(strings)]


def fnv1a(table: tuple[int, ...]) -> str:
    h = 0xCBF29CE484222325
    for byte in b"".join(e.to_bytes(4, "little") for e in table):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def c_build(binary: Path, m: int, seed: int, bes: list[MaglevBackend]) -> tuple[float, str]:
    """(CPU seconds, checksum) of one C build."""
    out = subprocess.run(
        [str(binary), str(m), str(seed)],
        input="".join(b.hash_string + "\n" for b in bes),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]) / 1e6, out[1]


def build_times(binary: Path, rounds: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for m, n in BUILDS:
        cfg = maglev_config(m)
        bes = backends(n)
        py_s: list[float] = []
        c_s: list[float] = []
        for _ in range(rounds):
            seconds, c_sum = c_build(binary, m, cfg.seed_murmur, bes)
            c_s.append(seconds)
            start = time.process_time()
            table = lookup_table(bes, cfg)
            py_s.append(time.process_time() - start)
            if fnv1a(table) != c_sum:
                raise SystemExit(f"M={m} N={n}: the C reference built another table")
        summary = _lab.ratio_summary(py_s, c_s)
        out[f"M{m}_N{n}"] = {
            "python_ms": [s * 1000 for s in py_s],
            "c_ms": [s * 1000 for s in c_s],
            "python_median_ms": statistics.median(py_s) * 1000,
            "c_median_ms": statistics.median(c_s) * 1000,
            "ratio": summary,
        }
        print(
            f"build M={m} N={n}: python {statistics.median(py_s) * 1000:.1f} ms, "
            f"C {statistics.median(c_s) * 1000:.2f} ms, ratio {summary['median']:.1f} "
            f"[{summary['low']:.1f}, {summary['high']:.1f}]",
            flush=True,
        )
    return out


def churn_and_balance() -> dict[str, object]:
    out: dict[str, object] = {}
    for m, n in (*REGIME, (16381, 1000)):
        cfg = maglev_config(m)
        bes = backends(n)
        before = lookup_table(bes, cfg)
        counts = Counter(before)
        entry: dict[str, object] = {"balance_max_over_mean": max(counts.values()) / (m / n)}
        if (m, n) in REGIME:
            moved_shares = []
            for k in range(REMOVALS):
                gone = bes[k * n // REMOVALS]
                after = lookup_table([b for b in bes if b is not gone], cfg)
                moved = sum(
                    1 for b, a in zip(before, after, strict=True) if b != gone.id and a != b
                )
                moved_shares.append(100 * moved / m)
            entry |= {
                "churn_pct_max": max(moved_shares),
                "churn_pct_mean": statistics.mean(moved_shares),
            }
        out[f"M{m}_N{n}"] = entry
        print(f"M={m} N={n}: {entry}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pylium-maglev-") as work:
        binary = Path(work) / "maglev_ref"
        _lab.sh("cc", "-O2", "-o", str(binary), str(_lab.TOOLS / "maglev_ref.c"))
        result = {"build": build_times(binary, args.rounds), "table": churn_and_balance()}
    _lab.write_results("maglev", {"rounds": args.rounds, **result})


if __name__ == "__main__":
    main()
