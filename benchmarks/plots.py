"""PNG plots of the benchmark results (``benchmarks/results/*.json``) into ``benchmarks/plots/``:

- ``socket_lb.png``: connections per second to one ClusterIP against the number of services
  programmed (socket-LB), with the kube-proxy-style iptables chain at 10,000 services (B5);
- ``pod_rr.png``: TCP_RR and TCP_CRR pod-to-pod ÷ node-to-node with their 90 % intervals and
  the must/target goals (B2, B3);
- ``maglev.png``: Maglev table build time, Python against the C reference, per M and N (B7a).

A plot whose results file is missing is skipped (and said so). ``make bench`` runs this after
``report.py``; ``report.md`` links the plots. Run: ``.venv/bin/python benchmarks/plots.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after the backend is chosen

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PLOTS = HERE / "plots"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        print(f"{name}: no results ({path} missing), plot skipped")
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def socket_lb(data: dict[str, Any], out: Path) -> None:
    rates = {int(n): float(r) for n, r in data["connections_per_second"].items()}
    counts = sorted(rates)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(counts, [rates[n] for n in counts], marker="o", label="pylium (socket-LB)")
    ipt = data.get("iptables_10000_connections_per_second")
    if ipt:
        ax.plot([10_000], [ipt], marker="s", linestyle="none", label="iptables DNAT chain")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("services programmed")
    ax.set_ylabel("connections per second (median)")
    ax.set_title("B5: connect rate to one ClusterIP")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def pod_rr(data: dict[str, Any], out: Path) -> None:
    tests = [t for t in ("rr", "crr_1", "crr_2") if t in data]
    medians = [data[t]["ratio"]["median"] for t in tests]
    errors = [
        [m - data[t]["ratio"]["low"] for t, m in zip(tests, medians, strict=True)],
        [data[t]["ratio"]["high"] - m for t, m in zip(tests, medians, strict=True)],
    ]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    xs = list(range(len(tests)))
    ax.bar(xs, medians, yerr=errors, capsize=6, color="tab:blue", label="median, 90 % interval")
    for x, t in zip(xs, tests, strict=True):
        ax.hlines(data[t]["must"], x - 0.4, x + 0.4, colors="tab:red", linestyles="--")
        ax.hlines(data[t]["target"], x - 0.4, x + 0.4, colors="tab:green", linestyles=":")
    ax.plot([], [], color="tab:red", linestyle="--", label="must")
    ax.plot([], [], color="tab:green", linestyle=":", label="target")
    ax.set_xticks(xs, ["TCP_RR", "TCP_CRR 1 proc", "TCP_CRR 2 procs"][: len(tests)])
    ax.set_ylabel("pod-to-pod ÷ node-to-node")
    ax.set_title("B2/B3: latency and connection rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def maglev(data: dict[str, Any], out: Path) -> None:
    cases = sorted(data["build"])
    py = [data["build"][c]["python_median_ms"] for c in cases]
    c_ref = [data["build"][c]["c_median_ms"] for c in cases]
    xs = list(range(len(cases)))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.bar([x - 0.2 for x in xs], py, width=0.4, label="pylium (Python)")
    ax.bar([x + 0.2 for x in xs], c_ref, width=0.4, label="C reference (-O2)")
    ax.set_xticks(xs, [c.replace("_", "\n") for c in cases])
    ax.set_yscale("log")
    ax.set_ylabel("build time, ms (CPU, median)")
    ax.set_title("B7a: Maglev table generation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


PLOTTERS = {"socket_lb": socket_lb, "pod_rr": pod_rr, "maglev": maglev}


def main() -> None:
    PLOTS.mkdir(exist_ok=True)
    for name, plot in PLOTTERS.items():
        data = _load(name)
        if data is None:
            continue
        out = PLOTS / f"{name}.png"
        plot(data, out)
        print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
