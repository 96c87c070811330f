"""``benchmarks/report.md`` from the JSON every benchmark writes to ``benchmarks/results/``: one
table of ratios against the goals of ``perf-anchors.md`` §8 (B1-B10, where a benchmark covers
one), with the absolute figures beside them, and a line per benchmark that has not been run.

Run: ``.venv/bin/python benchmarks/report.py`` (``make bench`` runs it last).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPORT = HERE / "report.md"


@dataclass(frozen=True)
class Row:
    anchor: str
    what: str
    ratio: str
    goal: str
    absolute: str
    met: bool | None


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def datapath(d: dict[str, Any]) -> list[Row]:
    rows = []
    med = d.get("median_gbps", {})
    for mode, anchor in (("native", "B1"), ("vxlan", "B4*")):
        ratio = d.get("ratios", {}).get(mode)
        if ratio is None:
            continue
        rows.append(
            Row(
                anchor,
                f"pod-to-pod TCP stream across nodes, pylium {mode} / kernel {mode} (iperf3)",
                _fmt(ratio),
                ">= 0.90",
                f"{med.get(f'pylium_{mode}', 0):.1f} vs {med.get(f'kernel_{mode}', 0):.1f} Gbit/s",
                ratio >= 0.90,
            )
        )
    return rows


def policy_rr(d: dict[str, Any]) -> list[Row]:
    med = d["median_tps"]
    return [
        Row(
            "B8a",
            "TCP_RR between pods, 10,000 policy-map entries / 1 entry",
            _fmt(d["ratio"]),
            ">= 0.95",
            f"{med['rules_10000']:.0f} vs {med['rules_1']:.0f} trans/s",
            d["ratio"] >= 0.95,
        )
    ]


def policy_resolution(d: dict[str, Any]) -> list[Row]:
    med = d["median_s"]
    return [
        Row(
            "B8b",
            "policy resolution, one changed policy / full (1,000 CNPs, 5,000 identities, "
            "100 endpoints)",
            _fmt(d["incremental_over_full"], 4),
            "(report)",
            f"full {med['full'] * 1000:.0f} ms, incremental {med['incremental'] * 1000:.1f} ms",
            None,
        )
    ]


def policy_enforcement(d: dict[str, Any]) -> list[Row]:
    a, b = d["apply_to_map"], d["store_put_to_watch"]
    ratio = a["p50_ms"] / b["p50_ms"]
    return [
        Row(
            "B6-like",
            "apply -> policy-map entry / store put -> watch event (p50)",
            _fmt(ratio, 1),
            "(report)",
            f"p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms",
            None,
        )
    ]


def hubble(d: dict[str, Any]) -> list[Row]:
    rows = []
    cap = d.get("capacity")
    if cap:
        rows.append(
            Row(
                "B10b",
                "Hubble capacity: flows decoded per second on one core",
                "-",
                ">= 20,000/s",
                f"{cap['flows_per_s']:.0f} flows/s",
                cap["flows_per_s"] >= 20_000,
            )
        )
    over = d.get("overhead")
    if over:
        rows.append(
            Row(
                "B10a",
                "TCP_RR between pods, Hubble on / off",
                _fmt(over["ratio_on_off"]),
                ">= 0.97",
                f"{over['median_tps']['hubble_on']:.0f} vs {over['median_tps']['hubble_off']:.0f}"
                " trans/s",
                over["ratio_on_off"] >= 0.97,
            )
        )
    return rows


def socket_lb(d: dict[str, Any]) -> list[Row]:
    rates = d.get("connections_per_second", {})
    if "1" not in rates:
        return []
    big = max(rates, key=int)
    ratio = rates[big] / rates["1"]
    return [
        Row(
            "B5",
            f"connect rate to a ClusterIP with {big} services / 1 service (socket-LB)",
            _fmt(ratio),
            ">= 0.95",
            f"{rates[big]:.0f} vs {rates['1']:.0f} conn/s",
            ratio >= 0.95,
        )
    ]


def eni_ipam(d: dict[str, Any]) -> list[Row]:
    rows = []
    for size, w in sorted(d.get("watermark", {}).items(), key=lambda kv: int(kv[0])):
        rows.append(
            Row(
                "issue 9",
                f"ENI IPAM: a node reaching its pre-allocate watermark of {size} (moto)",
                "-",
                "(report)",
                f"median {w['median_ms']:.0f} ms, {w['calls_per_ip']} EC2 calls per IP",
                None,
            )
        )
    return rows


BENCHMARKS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "datapath_throughput": datapath,
    "policy_rr": policy_rr,
    "policy_resolution": policy_resolution,
    "policy_enforcement": policy_enforcement,
    "hubble": hubble,
    "socket_lb": socket_lb,
    "eni_ipam": eni_ipam,
}


def main() -> None:
    rows: list[Row] = []
    missing: list[str] = []
    for name, extract in BENCHMARKS.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            missing.append(name)
            continue
        try:
            rows += extract(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            missing.append(f"{name} (unreadable: {err})")
    lines = [
        "# Benchmark report",
        "",
        "Ratios against a baseline measured in the same run (absolute figures on this shared",
        "2-vCPU machine are noise); goals from `perf-anchors.md` §8. Regenerate with `make bench`.",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from the results;",
        "runs on a machine shared with other work spread by +-10-30% (see each JSON's samples).",
        "",
        "| anchor | what | ratio | goal | absolute | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.anchor} | {r.what} | {r.ratio} | {r.goal} | {r.absolute} | {met} |")
    if missing:
        lines += ["", "Not run: " + ", ".join(missing) + "."]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
