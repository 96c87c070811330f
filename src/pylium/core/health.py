"""L2: cilium-health's bookkeeping: probe results per node, what is due, the summary, and
``cilium-health status``'s text.

Each agent probes every node of the cluster (itself included, as upstream does: the local
node is listed as ``(localhost)``) with ICMP echo and ``HTTP GET http://<ip>:4240/hello``.
A node is *reachable* when every probe of its addresses succeeded; a node that answers ICMP
but not HTTP (its host is up, its agent is not) is unreachable, and the text shows which
probe failed. Everything here is pure: time comes in as arguments.

JSON follows upstream's health API models (``api/v1/health/models``): ``HealthStatusResponse``
``{local{name}, nodes[]{name, host{primary-address{ip, icmp, http}}, health-endpoint},
probeInterval, timestamp}``, a ``ConnectivityStatus`` being ``{status, latency}`` with
``status`` empty on success and ``latency`` in nanoseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PROBE_RATIO = 0.5
"""Upstream's ``connectivity-probe-frequency-ratio`` default."""
PROBE_BASE_SECONDS = 10.0
PROBE_RATIO_SECONDS = 100.0
RETRY_UNREACHABLE = 10.0
"""Seconds before an unreachable node is probed again, between two rounds."""


def probe_interval(probed_ips: int, ratio: float = PROBE_RATIO) -> float:
    """Seconds between two rounds: (10 s + ratio x 100 s) x ln(1 + number of probed IPs)
    (upstream ``pkg/health/server/prober.go``); at least the base for one IP."""
    base = PROBE_BASE_SECONDS + ratio * PROBE_RATIO_SECONDS
    return base * math.log(1 + max(1, probed_ips))


@dataclass(frozen=True, slots=True)
class Connectivity:
    """One probe's outcome: ``status`` empty when it succeeded, else why not."""

    latency_ns: int = 0
    status: str = ""

    @property
    def ok(self) -> bool:
        return not self.status

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "latency": self.latency_ns}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Connectivity | None:
        if data is None:
            return None
        return cls(latency_ns=int(data.get("latency") or 0), status=str(data.get("status") or ""))


@dataclass(frozen=True, slots=True)
class PathStatus:
    """The probes of one address; ``None`` = not probed (yet)."""

    ip: str
    icmp: Connectivity | None = None
    http: Connectivity | None = None

    def probes(self) -> list[Connectivity]:
        return [c for c in (self.icmp, self.http) if c is not None]

    @property
    def ok(self) -> bool:
        probes = self.probes()
        return bool(probes) and all(c.ok for c in probes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ip": self.ip}
        if self.icmp is not None:
            out["icmp"] = self.icmp.to_json()
        if self.http is not None:
            out["http"] = self.http.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PathStatus:
        return cls(
            ip=str(data.get("ip", "")),
            icmp=Connectivity.from_json(data.get("icmp")),
            http=Connectivity.from_json(data.get("http")),
        )


@dataclass(frozen=True, slots=True)
class NodeHealth:
    name: str
    host: PathStatus
    endpoint: PathStatus | None = None
    """The node's health endpoint (``cilium-health-ep``); not built yet, so always None."""

    def paths(self) -> list[PathStatus]:
        return [self.host] + ([self.endpoint] if self.endpoint is not None else [])

    @property
    def reachable(self) -> bool:
        """Upstream's ``nodeIsHealthy``: every probe of every address succeeded."""
        return all(p.ok for p in self.paths())

    def host_counts(self) -> tuple[int, int]:
        """(successful, total) probes of the host address: ``1/2`` = ICMP yes, HTTP no."""
        probes = self.host.probes()
        return sum(1 for c in probes if c.ok), len(probes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "host": {"primary-address": self.host.to_json()},
        }
        if self.endpoint is not None:
            out["health-endpoint"] = {"primary-address": self.endpoint.to_json()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeHealth:
        endpoint = data.get("health-endpoint")
        return cls(
            name=str(data.get("name", "")),
            host=PathStatus.from_json((data.get("host") or {}).get("primary-address") or {}),
            endpoint=PathStatus.from_json(endpoint.get("primary-address") or {})
            if isinstance(endpoint, Mapping)
            else None,
        )


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What one agent knows of the cluster's connectivity (``GET /status``)."""

    local: str
    nodes: tuple[NodeHealth, ...]
    timestamp: str
    probe_interval_s: float

    def summary(self) -> tuple[int, int]:
        """(reachable, total) nodes, as ``Cluster health: n/m reachable``."""
        return sum(1 for n in self.nodes if n.reachable), len(self.nodes)

    def unreachable(self) -> list[NodeHealth]:
        return [n for n in self.nodes if not n.reachable]

    def to_json(self) -> dict[str, Any]:
        return {
            "local": {"name": self.local},
            "nodes": [n.to_json() for n in self.nodes],
            "probeInterval": go_duration(int(self.probe_interval_s * 1e9), round_to=1_000_000),
            "probeIntervalSeconds": self.probe_interval_s,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthReport:
        return cls(
            local=str((data.get("local") or {}).get("name", "")),
            nodes=tuple(NodeHealth.from_json(n) for n in data.get("nodes") or []),
            timestamp=str(data.get("timestamp", "")),
            probe_interval_s=float(data.get("probeIntervalSeconds") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class Target:
    """A node to probe: its name and primary (InternalIP) address."""

    name: str
    ip: str


@dataclass
class HealthBook:
    """The prober's memory: the last result per node and when each node was last probed.
    Not thread-safe on its own (the agent guards it with a lock)."""

    local: str
    results: dict[str, NodeHealth] = field(default_factory=dict)
    probed_at: dict[str, float] = field(default_factory=dict)
    last_round: float = 0.0
    """Monotonic time of the last completed probe round (0: none yet)."""

    def due(
        self,
        targets: Iterable[Target],
        now: float,
        interval: float,
        *,
        retry: float = RETRY_UNREACHABLE,
    ) -> list[Target]:
        """Whom to probe now: everyone when a round is due (or was never run); otherwise the
        nodes never probed at their current address (new nodes are probed at once) and the
        unreachable ones last probed ``retry`` seconds ago or more (so that a recovered node
        shows up before the next round; upstream waits for the round)."""
        targets = list(targets)
        if not self.last_round or now - self.last_round >= interval:
            return targets

        def wanted(t: Target) -> bool:
            last = self.results.get(t.name)
            if last is None or t.name not in self.probed_at or last.host.ip != t.ip:
                return True
            return not last.reachable and now - self.probed_at[t.name] >= retry

        return [t for t in targets if wanted(t)]

    def record(
        self, target: Target, icmp: Connectivity | None, http: Connectivity | None, now: float
    ) -> None:
        self.results[target.name] = NodeHealth(target.name, PathStatus(target.ip, icmp, http))
        self.probed_at[target.name] = now

    def finish_round(self, targets: Iterable[Target], now: float, *, full: bool) -> None:
        """Forget nodes that left the cluster; a full round restarts the interval."""
        names = {t.name for t in targets}
        for name in list(self.results):
            if name not in names:
                del self.results[name]
                self.probed_at.pop(name, None)
        if full:
            self.last_round = now

    def report(self, *, timestamp: datetime, interval: float) -> HealthReport:
        nodes = sorted(self.results.values(), key=lambda n: (n.name != self.local, n.name))
        return HealthReport(
            local=self.local,
            nodes=tuple(nodes),
            timestamp=rfc3339(timestamp),
            probe_interval_s=round(interval, 3),
        )


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(ns: int, *, round_to: int = 0) -> str:
    """A duration as Go's ``time.Duration.String`` prints it (``682.8µs``, ``1m6s``, ``0s``),
    optionally rounded to a multiple of ``round_to`` nanoseconds first."""
    if round_to > 1:
        ns = (ns + round_to // 2) // round_to * round_to
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1_000_000)}ms"
    total_s = ns / 1e9
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1e9)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{_trim(total_s)}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def probe_text(probe: Connectivity | None) -> str:
    if probe is None:
        return "not probed yet"
    if probe.ok:
        return f"OK, RTT={go_duration(probe.latency_ns, round_to=100)}"
    return probe.status


def tabwrite(rows: Sequence[Sequence[str]], *, padding: int = 1, minwidth: int = 0) -> list[str]:
    """Go's tabwriter over tab-separated cells (the last cell of a row is not padded)."""
    columns = max((len(r) for r in rows), default=0)
    widths = [
        max([minwidth, *(len(r[c]) + padding for r in rows if c < len(r) - 1)])
        for c in range(columns)
    ]
    return [
        "".join(cell.ljust(widths[c]) if c < len(r) - 1 else cell for c, cell in enumerate(r))
        for r in rows
    ]


def cluster_health_line(report: HealthReport) -> str:
    """The value after ``Cluster health:`` in ``cilium-dbg status``."""
    reachable, total = report.summary()
    interval = go_duration(int(report.probe_interval_s * 1e9), round_to=1_000_000_000)
    return f"{reachable}/{total} reachable   ({report.timestamp})   (Probe interval: {interval})"


def unreachable_table(report: HealthReport, *, all_nodes: bool = False) -> list[str]:
    """Below ``Cluster health:``: the unreachable nodes (every node with ``all_nodes``),
    upstream's ``Name  IP  Node  Endpoints`` with successful/total probe counts."""
    nodes = list(report.nodes) if all_nodes else report.unreachable()
    if not nodes:
        return []
    rows = [["Name", "IP", "Node", "Endpoints"]]
    for node in nodes:
        ok, total = node.host_counts()
        if node.endpoint is None:
            endpoints = "n/a"
        else:
            probes = node.endpoint.probes()
            endpoints = f"{sum(1 for c in probes if c.ok)}/{len(probes)}"
        name = node.name + (" (localhost)" if node.name == report.local else "")
        rows.append([name, node.host.ip, f"{ok}/{total}", endpoints])
    return ["  " + line for line in tabwrite(rows, padding=3)]


def format_health_status(report: HealthReport, *, succinct: bool = False) -> list[str]:
    """``cilium-health status``: probe time, then per node its host's ICMP and HTTP probes;
    ``succinct``: one line per node."""
    if succinct:
        rows = [["Name", "IP", "Reachable", "Endpoints"]]
        for node in report.nodes:
            ok, total = node.host_counts()
            name = node.name + (" (localhost)" if node.name == report.local else "")
            rows.append(
                [name, node.host.ip, "Yes" if node.reachable else f"No ({ok}/{total})", "n/a"]
            )
        return [f"Cluster health: {cluster_health_line(report)}", *tabwrite(rows, padding=3)]
    lines = [f"Probe time:   {report.timestamp}", "Nodes:"]
    for node in report.nodes:
        suffix = " (localhost)" if node.name == report.local else ""
        lines.append(f"  {node.name}{suffix}:")
        lines.append(f"    Host connectivity to {node.host.ip}:")
        lines.append(f"      ICMP to stack:   {probe_text(node.host.icmp)}")
        lines.append(f"      HTTP to agent:   {probe_text(node.host.http)}")
        if node.endpoint is not None:
            lines.append(f"    Endpoint connectivity to {node.endpoint.ip}:")
            lines.append(f"      ICMP to stack:   {probe_text(node.endpoint.icmp)}")
            lines.append(f"      HTTP to agent:   {probe_text(node.endpoint.http)}")
    return lines


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """The cluster's view merged from every live agent's report: a node counts as reachable
    when every reporting agent reached it (and at least one probed it)."""

    reachable: int
    total: int
    reporters: tuple[str, ...]
    unreachable: tuple[tuple[str, str], ...]
    """(node, "seen from <agent>: <why>") for every node some agent could not reach."""

    def line(self) -> str:
        if not self.reporters:
            return "no agent has reported yet"
        return f"{self.reachable}/{self.total} reachable   (seen from {', '.join(self.reporters)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "total": self.total,
            "reporters": list(self.reporters),
            "unreachable": [{"node": n, "reason": r} for n, r in self.unreachable],
        }


def why_unreachable(node: NodeHealth) -> str:
    """``ICMP ok, HTTP: connection refused``: which probe failed, upstream's distinction
    between a host that is down and an agent that is."""
    parts = []
    for label, probe in (("ICMP", node.host.icmp), ("HTTP", node.host.http)):
        if probe is None:
            parts.append(f"{label} not probed yet")
        elif probe.ok:
            parts.append(f"{label} ok")
        else:
            parts.append(f"{label}: {probe.status}")
    return ", ".join(parts)


def merge_cluster(nodes: Sequence[str], reports: Mapping[str, HealthReport]) -> ClusterHealth:
    """``nodes``: every registered node; ``reports``: each live agent's last report."""
    unreachable: list[tuple[str, str]] = []
    reachable = 0
    for name in sorted(nodes):
        seen = [(agent, r) for agent, r in sorted(reports.items())]
        views = [(agent, n) for agent, r in seen for n in r.nodes if n.name == name]
        bad = [(agent, n) for agent, n in views if not n.reachable]
        if views and not bad:
            reachable += 1
        for agent, n in bad:
            unreachable.append((name, f"seen from {agent}: {why_unreachable(n)}"))
        if not views and reports:
            unreachable.append((name, "not probed yet by any agent"))
    return ClusterHealth(reachable, len(nodes), tuple(sorted(reports)), tuple(unreachable))
