"""``benchmarks/report.md`` from the JSON every benchmark writes to ``benchmarks/results/``: one
table of ratios against the goals of ``perf-anchors.md`` §8 (B1-B10, where a benchmark covers
one), with the absolute figures beside them, and a line per benchmark that has not been run.

Run: ``.venv/bin/python benchmarks/report.py [--note TEXT ...]`` (``make bench`` runs it
last; notes say how a hand-made run differed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _lab

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
    met: bool | str | None
    """True/False for a single goal; "target", "must" or "no" for graded ones."""


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def _interval(s: dict[str, Any], digits: int = 2) -> str:
    """A paired-ratio summary (``_lab.ratio_summary``): median [90 % bootstrap interval]."""
    return f"{s['median']:.{digits}f} [{s['low']:.{digits}f}, {s['high']:.{digits}f}]"


def _grade(
    summary: dict[str, Any],
    must: float,
    target: float,
    *,
    at_least: bool = True,
    absolute: tuple[float, float, float] | None = None,
) -> str:
    """perf-anchors §8.1's rule at both levels, with an absolute goal where §8.2 sets one
    (``absolute`` = (value, must, target), lower is better)."""

    def ok(goal: float, level: int) -> bool:
        good = _lab.met(summary, goal, at_least=at_least)
        if absolute is not None:
            good = good and absolute[0] <= absolute[level]
        return good

    return "target" if ok(target, 2) else ("must" if ok(must, 1) else "no")


def _goal(must: float, target: float, op: str, absolute: str = "") -> str:
    more = f"; {absolute}" if absolute else ""
    return f"must {op} {must:g}, target {op} {target:g}{more}"


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


def _paired(d: dict[str, Any], ratio: float, goal: float) -> tuple[str, bool]:
    """The ratio cell and verdict: the paired-ratio summary (median of per-round ratios,
    graded by §8.1) when the JSON has one, else the older ratio of medians."""
    summary = d.get("ratio_interval")
    if summary:
        return _interval(summary), _lab.met(summary, goal)
    return _fmt(ratio), ratio >= goal


def policy_rr(d: dict[str, Any]) -> list[Row]:
    med = d["median_tps"]
    cell, ok = _paired(d, d["ratio"], 0.95)
    return [
        Row(
            "B8a",
            "TCP_RR between pods, 10,000 policy-map entries / 1 entry",
            cell,
            ">= 0.95",
            f"{med['rules_10000']:.0f} vs {med['rules_1']:.0f} trans/s",
            ok,
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
        cell, ok = _paired(over, over["ratio_on_off"], 0.97)
        rows.append(
            Row(
                "B10a",
                "TCP_RR between pods, Hubble on / off",
                cell,
                ">= 0.97",
                f"{over['median_tps']['hubble_on']:.0f} vs {over['median_tps']['hubble_off']:.0f}"
                " trans/s",
                ok,
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


def pod_rr(d: dict[str, Any]) -> list[Row]:
    rows = []
    names = {
        "rr": ("B2", "TCP_RR pod-to-pod / node-to-node, native routing, pinned"),
        "crr_1": ("B3", "TCP_CRR 1 process pod-to-pod / node-to-node, pinned"),
        "crr_2": ("B3", "TCP_CRR 2 processes pod-to-pod / node-to-node, both cores"),
    }
    for key, (anchor, what) in names.items():
        t = d.get(key)
        if not t:
            continue
        med = t["median_tps"]
        rows.append(
            Row(
                anchor,
                what + (f" (lab with {', '.join(d['set'])})" if d.get("set") else ""),
                _interval(t["ratio"]),
                _goal(t["must"], t["target"], ">="),
                f"{med['pod_to_pod']:.0f} vs {med['node_to_node']:.0f} trans/s",
                _grade(t["ratio"], t["must"], t["target"]),
            )
        )
    return rows


def service_programming(d: dict[str, Any]) -> list[Row]:
    rows = []
    ch = d.get("change")
    if ch:
        n = ch["services"]
        p99 = ch["p99_ms"]
        rows.append(
            Row(
                "B6a",
                f"p99 Service+EndpointSlice change -> service-map entry, {n['large']:,} / "
                f"{n['small']} existing services (lab agent)",
                _interval(ch["ratio"]),
                _goal(2.0, 1.3, "<=", "p99 <= 250 / 100 ms"),
                f"p99 {p99['large']:.0f} vs {p99['small']:.0f} ms",
                _grade(ch["ratio"], 2.0, 1.3, at_least=False, absolute=(p99["large"], 250, 100)),
            )
        )
    res = d.get("resync")
    if res:
        med = res["median_s"]
        rows.append(
            Row(
                "B6b",
                f"full resync of {res['services']:,} services (services engine) / "
                "iptables-restore of the kube-proxy ruleset",
                _interval(res["ratio"]),
                _goal(1.0, 0.2, "<="),
                f"{med['pylium']:.2f} vs {med['iptables']:.2f} s",
                _grade(res["ratio"], 1.0, 0.2, at_least=False),
            )
        )
    return rows


def maglev(d: dict[str, Any]) -> list[Row]:
    rows = []
    for key, b in d.get("build", {}).items():
        m, n = (int(x[1:]) for x in key.split("_"))
        limits = (300.0, 100.0 if n >= 1000 else 20.0)
        rows.append(
            Row(
                "B7a",
                f"Maglev table build M={m} N={n}, Python / C reference (-O2, same table)",
                _interval(b["ratio"], 1),
                _goal(20, 5, "<=", f"<= {limits[0]:g} / {limits[1]:g} ms"),
                f"{b['python_median_ms']:.1f} vs {b['c_median_ms']:.2f} ms",
                _grade(
                    b["ratio"], 20, 5, at_least=False, absolute=(b["python_median_ms"], *limits)
                ),
            )
        )
    for key, t in d.get("table", {}).items():
        m, n = (int(x[1:]) for x in key.split("_"))
        if "churn_pct_max" in t:
            churn = t["churn_pct_max"]
            rows.append(
                Row(
                    "B7b",
                    f"Maglev churn among survivors, 1 of N={n} removed, M={m} (worst of 10)",
                    "-",
                    "<= 1 %",
                    f"{churn:.2f} % (mean {t['churn_pct_mean']:.2f} %)",
                    churn <= 1.0,
                )
            )
        balance = t["balance_max_over_mean"]
        rows.append(
            Row(
                "B7c",
                f"Maglev balance max / mean slots, M={m} N={n}"
                + ("" if "churn_pct_max" in t else " (N > M/100: information)"),
                _fmt(balance, 4),
                "must <= 1.02, target <= 1.01",
                f"{m / n:.1f} slots per backend",
                None
                if "churn_pct_max" not in t
                else ("target" if balance <= 1.01 else ("must" if balance <= 1.02 else "no")),
            )
        )
    return rows


def pod_startup(d: dict[str, Any]) -> list[Row]:
    p99 = d["p99_ms"]
    rss = d["rss"]
    per = rss["kib_per_endpoint"]
    return [
        Row(
            "B9",
            f"p99 CNI ADD -> endpoint with policy, burst of {d['burst']} / pyroute2 plumbing floor",
            _interval(d["ratio"]),
            _goal(5, 3, "<=", "p99 <= 2 / 1 s"),
            f"p99 {p99['pylium']:.0f} vs {p99['floor']:.0f} ms",
            _grade(d["ratio"], 5, 3, at_least=False, absolute=(p99["pylium"], 2000, 1000)),
        ),
        Row(
            "B9",
            f"agent RSS growth per endpoint ({rss['endpoints']} endpoints, linear)",
            "-",
            "must <= 100, target <= 50 KiB",
            f"{per:.1f} KiB ({rss['mib_per_1000_endpoints']:.1f} MiB per 1,000)",
            "target" if per <= 50 else ("must" if per <= 100 else "no"),
        ),
    ]


BENCHMARKS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "datapath_throughput": datapath,
    "policy_rr": policy_rr,
    "policy_resolution": policy_resolution,
    "policy_enforcement": policy_enforcement,
    "hubble": hubble,
    "socket_lb": socket_lb,
    "eni_ipam": eni_ipam,
    "pod_rr": pod_rr,
    "service_programming": service_programming,
    "maglev": maglev,
    "pod_startup": pod_startup,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report's Notes (repeatable)"
    )
    args = parser.parse_args()
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
        "A ratio `m [lo, hi]` is the median of per-round paired ratios (interleaved A/B) with",
        "its bootstrap 90 % interval; `met` grades it by §8.1 (median past the goal, the near",
        "bound within 0.05 of it) at the target and must levels, with the absolute goal if any.",
        "",
        "| anchor | what | ratio | goal | absolute | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if isinstance(r.met, str):
            met = "**no**" if r.met == "no" else r.met
        else:
            met = "-" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.anchor} | {r.what} | {r.ratio} | {r.goal} | {r.absolute} | {met} |")
    if missing:
        lines += ["", "Not run: " + ", ".join(missing) + "."]
    lines += [
        "",
        "Plots (`benchmarks/plots.py`, after this report in `make bench`):",
        "",
        "![B5 connect rate against services](plots/socket_lb.png)",
        "![B2/B3 ratios](plots/pod_rr.png)",
        "![B7a Maglev build times](plots/maglev.png)",
    ]
    if args.note:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in args.note]
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
