"""L2: ``pylium status`` in the shapes of ``cilium status`` (the cluster, from the store) and
``cilium-dbg status`` (one node, from its agent's StatusResponse). Pure: data in, lines out.

The cluster view counts like the DaemonSet and Deployment that upstream reads: *desired*
agents are the registered nodes (``Node``), *ready* and *available* ones hold a heartbeat
lease (``nodes/heartbeat/<node>``); the operator Deployment desires ``operator.replicas``
(``operator/replicas``, 1 when unset) and counts as ready the replicas registered under
``operator/instances/`` (each bound to its election lease), one of which must lead.
Pods are *managed by Cilium* when they have a CiliumEndpoint. A failing subsystem is listed
under ``Errors:``/``Warnings:`` (cluster) or expanded under its line (node) with what to do
next.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pylium.core.health import (
    ClusterHealth,
    HealthReport,
    cluster_health_line,
    go_duration,
    merge_cluster,
    tabwrite,
    unreachable_table,
)

LOGO = (
    "    /¯¯\\",
    " /¯¯\\__/¯¯\\",
    " \\__/¯¯\\__/",
    " /¯¯\\__/¯¯\\",
    " \\__/¯¯\\__/",
    "    \\__/",
)

AGENT = "cilium"
OPERATOR = "cilium-operator"


@dataclass(frozen=True, slots=True)
class Workload:
    """A DaemonSet or Deployment's counts."""

    kind: str
    name: str
    desired: int
    ready: int
    available: int

    def cells(self) -> str:
        text = (
            f"Desired: {self.desired}, Ready: {self.ready}/{self.desired}, "
            f"Available: {self.available}/{self.desired}"
        )
        if self.available < self.desired:
            text += f", Unavailable: {self.desired - self.available}/{self.desired}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "desired": self.desired,
            "ready": self.ready,
            "available": self.available,
            "unavailable": self.desired - self.available,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    component: str
    pod: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"component": self.component, "pod": self.pod, "message": self.message}


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    agents: Workload
    operator: Workload
    leader: str
    pods_managed: int
    pods_total: int
    version: str
    not_ready: tuple[str, ...] = ()
    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    health: ClusterHealth | None = None
    config_errors: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        """What ``--wait`` waits for: every agent and the operator ready, no errors."""
        return (
            not self.errors
            and self.agents.ready == self.agents.desired
            and self.operator.ready == self.operator.desired
        )

    def summary(self, component: str) -> str:
        """``OK``, or ``N errors`` and/or ``N warnings``."""
        errors = sum(1 for p in self.errors if p.component == component)
        warnings = sum(1 for p in self.warnings if p.component == component)
        parts = [f"{n} {what}" for n, what in ((errors, "errors"), (warnings, "warnings")) if n]
        return ", ".join(parts) or "OK"

    def to_json(self) -> dict[str, Any]:
        return {
            "cilium": self.summary(AGENT),
            "operator": self.summary(OPERATOR),
            "envoy_daemonset": "disabled",
            "hubble_relay": "disabled",
            "clustermesh": "disabled",
            "daemonsets": {AGENT: self.agents.to_json()},
            "deployments": {OPERATOR: {**self.operator.to_json(), "leader": self.leader}},
            "containers": {
                AGENT: self.running(self.agents),
                OPERATOR: self.running(self.operator),
            },
            "cluster_pods": {"managed": self.pods_managed, "total": self.pods_total},
            "cluster_health": self.health.to_json() if self.health is not None else None,
            "image_versions": self.images(),
            "errors": [p.to_json() for p in self.errors],
            "warnings": [p.to_json() for p in self.warnings],
            "ready": self.ready,
        }

    @staticmethod
    def running(workload: Workload) -> dict[str, int]:
        phases = {"Running": workload.ready}
        if workload.desired > workload.ready:
            phases["Unknown"] = workload.desired - workload.ready
        return phases

    def images(self) -> dict[str, dict[str, int]]:
        return {
            AGENT: {f"pylium-agent:v{self.version}": self.agents.desired},
            OPERATOR: {f"pylium-operator:v{self.version}": self.operator.desired},
        }


def cluster_status(
    *,
    nodes: Collection[str],
    cilium_nodes: Collection[str],
    heartbeats: Collection[str],
    leader: str,
    pods: Collection[tuple[str, str]],
    endpoints: Collection[tuple[str, str]],
    health_reports: Mapping[str, HealthReport],
    version: str,
    operators: Collection[str] = (),
    operator_replicas: int = 1,
) -> ClusterStatus:
    """``pods``/``endpoints``: (namespace, name) of every Pod (not on the host network) and
    every CiliumEndpoint; ``health_reports``: each live agent's last report; ``operators``:
    the identities of the operator replicas up, ``operator_replicas`` how many should be."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    ready = [n for n in sorted(nodes) if n in heartbeats]
    not_ready = [n for n in sorted(nodes) if n not in heartbeats]
    for node in not_ready:
        errors.append(
            Problem(
                AGENT,
                node,
                f"agent not ready: no heartbeat (nodes/heartbeat/{node}): it is down or cut off "
                f"from the store; see `pylium status --node {node}` and its agent.log, "
                f"restart it with `pylium lab restart {node}`",
            )
        )
    for node in sorted(set(nodes) - set(cilium_nodes)):
        warnings.append(Problem(AGENT, node, "Node registered without a CiliumNode"))
    for node in sorted(set(heartbeats) - set(nodes)):
        warnings.append(Problem(AGENT, node, "heartbeat from a node without a Node resource"))
    if not leader:
        errors.append(
            Problem(
                OPERATOR,
                "",
                "no operator holds the leader lease (operator/leader): start one "
                "(`pylium lab restart operator`) and read operator.log",
            )
        )
    running = len(operators) or (1 if leader else 0)
    if leader and running < operator_replicas:
        warnings.append(
            Problem(
                OPERATOR,
                "",
                f"{running}/{operator_replicas} operator replicas running (leader {leader}): "
                "no standby to take over; start the missing ones (`pylium lab restart "
                "operator`) and read their operator.log",
            )
        )
    health = None
    if health_reports:
        health = merge_cluster(sorted(nodes), health_reports)
        for node, reason in health.unreachable:
            if node in heartbeats or "ICMP ok" not in reason:
                warnings.append(Problem(AGENT, node, f"unreachable ({reason})"))
            else:
                warnings.append(
                    Problem(AGENT, node, f"host reachable but its agent is not ({reason})")
                )
    managed = sum(1 for p in pods if p in set(endpoints))
    return ClusterStatus(
        agents=Workload("DaemonSet", AGENT, len(nodes), len(ready), len(ready)),
        operator=Workload(
            "Deployment",
            OPERATOR,
            max(operator_replicas, running),
            running if leader else 0,
            running if leader else 0,
        ),
        leader=leader,
        pods_managed=managed,
        pods_total=len(pods),
        version=version,
        not_ready=tuple(not_ready),
        errors=tuple(errors),
        warnings=tuple(warnings),
        health=health,
    )


def render_cluster_status(st: ClusterStatus) -> list[str]:
    """The text of ``cilium status``: the logo block, then the counts."""
    summaries = [
        ("Cilium:", st.summary(AGENT)),
        ("Operator:", st.summary(OPERATOR)),
        ("Envoy DaemonSet:", "disabled"),
        ("Hubble Relay:", "disabled"),
        ("ClusterMesh:", "disabled"),
    ]
    width = max(len(label) for label, _ in summaries) + 4
    lines = [LOGO[0]]
    for logo, (label, value) in zip(LOGO[1:], summaries, strict=True):
        lines.append(f"{logo:<15}{label:<{width}}{value}")
    lines.append("")
    rows: list[list[str]] = [
        ["DaemonSet", AGENT, st.agents.cells()],
        ["Deployment", OPERATOR, st.operator.cells()],
    ]
    for i, (name, workload) in enumerate(((AGENT, st.agents), (OPERATOR, st.operator))):
        phases = ", ".join(f"{k}: {v}" for k, v in st.running(workload).items())
        rows.append(["Containers:" if i == 0 else "", name, phases])
    rows.append(["Cluster Pods:", f"{st.pods_managed}/{st.pods_total} managed by Cilium"])
    rows.append(
        ["Cluster health:", st.health.line() if st.health is not None else "no agent has reported"]
    )
    for i, (name, images) in enumerate(st.images().items()):
        for image, count in images.items():
            rows.append(["Image versions" if i == 0 else "", name, f"{image}: {count}"])
    for label, problems in (("Errors:", st.errors), ("Warnings:", st.warnings)):
        for i, p in enumerate(problems):
            rows.append([label if i == 0 else "", p.component, p.pod or "-", p.message])
    for i, err in enumerate(st.config_errors):
        rows.append(["Configuration:" if i == 0 else "", err])
    lines.extend(tabwrite(rows, padding=4))
    return lines


# -- one node: cilium-dbg status ---------------------------------------------------------------


def _state_line(sub: Mapping[str, Any] | None) -> str:
    if not sub:
        return "Disabled"
    state, msg = str(sub.get("state", "")), str(sub.get("msg", ""))
    return f"{state}   {msg}" if msg else state


def _ago(stamp: str, now: datetime) -> str:
    if not stamp:
        return "never"
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return stamp
    seconds = max(0, int((now - then).total_seconds()))
    return f"{go_duration(seconds * 1_000_000_000)} ago"


def failing(resp: Mapping[str, Any]) -> list[str]:
    """The subsystems in state Failure (what makes ``pylium status --node`` exit 1)."""
    out = []
    for key in ("kvstore", "cilium", "cilium-health", "ipam"):
        sub = resp.get(key) or {}
        if sub.get("state") == "Failure":
            out.append(key)
    for ctrl in resp.get("controllers") or []:
        if (ctrl.get("status") or {}).get("consecutive-failure-count"):
            out.append(f"controller {ctrl.get('name')}")
    return out


def format_status_response(
    resp: Mapping[str, Any], *, verbose: bool = False, now: datetime | None = None
) -> list[str]:
    """``cilium-dbg status`` (``pkg/client/client.go`` FormatStatusResponse) in its line
    order; ``verbose`` lists every controller and every node's health."""
    now = now or datetime.now(UTC)
    rows: list[list[str]] = []
    notes: dict[int, list[str]] = {}

    def add(label: str, value: str, *, sub: Mapping[str, Any] | None = None) -> None:
        rows.append([label, value])
        hint = (sub or {}).get("hint")
        if hint and (sub or {}).get("state") in ("Failure", "Warning"):
            notes.setdefault(len(rows) - 1, []).append(f"  -> {hint}")

    add("KVStore:", _state_line(resp.get("kvstore")), sub=resp.get("kvstore"))
    add("Kubernetes:", _state_line(resp.get("kubernetes")))
    add(
        "KubeProxyReplacement:",
        str((resp.get("kube-proxy-replacement") or {}).get("mode", "False")),
    )
    add("Host firewall:", str((resp.get("host-firewall") or {}).get("mode", "Disabled")))
    add("SRv6:", "Enabled" if (resp.get("srv6") or {}).get("enabled") else "Disabled")
    add("CNI Chaining:", str((resp.get("cni-chaining") or {}).get("mode", "none")))
    cni_file = resp.get("cni-file") or {}
    add(
        "CNI Config file:",
        str(cni_file.get("msg") or "not written yet (written once the datapath is ready)"),
    )
    add("Cilium:", _state_line(resp.get("cilium")), sub=resp.get("cilium"))
    add("NodeMonitor:", "Disabled")
    add(
        "Cilium health daemon:",
        _state_line(resp.get("cilium-health")),
        sub=resp.get("cilium-health"),
    )
    ipam = resp.get("ipam") or {}
    add(
        "IPAM:",
        str(ipam.get("msg", "")) if ipam.get("state") == "Ok" else _state_line(ipam),
        sub=ipam,
    )
    if verbose and ipam.get("mode"):
        notes.setdefault(len(rows) - 1, []).append(f"  Mode: {ipam['mode']}")
    add("IPv4 BIG TCP:", "Disabled")
    add("IPv6 BIG TCP:", "Disabled")
    add("BandwidthManager:", "Disabled")
    routing = resp.get("routing") or {}
    network = str(routing.get("inter-host-routing-mode", ""))
    if network == "Tunnel":
        network += f" [{routing.get('tunnel-protocol', '')}]"
    add("Routing:", f"Network: {network}   Host: {routing.get('intra-host-routing-mode', '')}")
    add("Attach Mode:", str(resp.get("attach-mode", "")))
    add("Device Mode:", str(resp.get("datapath-mode", "")))
    masq = resp.get("masquerading") or {}
    if masq.get("enabled"):
        protos = masq.get("enabledProtocols") or {}
        flags = ", ".join(
            f"{name}: {'Enabled' if protos.get(key) else 'Disabled'}"
            for key, name in (("ipv4", "IPv4"), ("ipv6", "IPv6"))
        )
        add("Masquerading:", f"{masq.get('mode', '')} [{flags}]")
    else:
        add("Masquerading:", "Disabled")
    controllers = list(resp.get("controllers") or [])
    healthy = [
        c for c in controllers if not (c.get("status") or {}).get("consecutive-failure-count")
    ]
    add("Controller Status:", f"{len(healthy)}/{len(controllers)} healthy")
    shown = controllers if verbose else [c for c in controllers if c not in healthy]
    if shown:
        table = [["Name", "Last success", "Last error", "Count", "Message"]]
        for ctrl in shown:
            st = ctrl.get("status") or {}
            table.append(
                [
                    str(ctrl.get("name", "")),
                    _ago(str(st.get("last-success-timestamp") or ""), now),
                    _ago(str(st.get("last-failure-timestamp") or ""), now),
                    str(st.get("consecutive-failure-count", 0)),
                    str(st.get("last-failure-msg") or "no error"),
                ]
            )
        notes.setdefault(len(rows) - 1, []).extend("  " + ln for ln in tabwrite(table, padding=3))
        if len(healthy) < len(controllers):
            notes[len(rows) - 1].append(
                "  -> a controller keeps failing: its message says why; the agent retries "
                "every second (agent.log has each attempt)"
            )
    add("Proxy Status:", "Disabled" if not resp.get("proxy") else "OK")
    ids = resp.get("identity-range") or {}
    add(
        "Global Identity Range:",
        f"min {ids.get('min-identity', 256)}, max {ids.get('max-identity', 65535)}",
    )
    add("Hubble:", _state_line(resp.get("hubble")))
    add("Encryption:", str((resp.get("encryption") or {}).get("mode", "Disabled")))
    cluster = resp.get("cluster") or {}
    health = cluster.get("health")
    if health:
        report = HealthReport.from_json(health)
        add("Cluster health:", cluster_health_line(report))
        extra = unreachable_table(report, all_nodes=verbose)
        if extra:
            notes.setdefault(len(rows) - 1, []).extend(extra)
        if report.unreachable():
            notes[len(rows) - 1].append(
                "  -> Node 1/2 = ICMP answered, HTTP :4240 did not: the host is up, its agent "
                "is not (check it with `pylium status --node <name>`); 0/2: the host or the "
                "path to it is down; details: `pylium health`"
            )
    else:
        add("Cluster health:", "Probe disabled")
    lines = tabwrite(rows, padding=3)
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        out.extend(notes.get(i, []))
    if verbose and resp.get("kube-proxy-replacement"):
        out.extend(kube_proxy_replacement_details(resp["kube-proxy-replacement"]))
    return out


def kube_proxy_replacement_details(kpr: Mapping[str, Any]) -> list[str]:
    """The ``KubeProxyReplacement Details:`` section of ``cilium-dbg status --verbose``
    (one tabwriter, padding 3: rows without a cell break the alignment, as in Go)."""
    features = kpr.get("features") or {}

    def on(name: str) -> str:
        return "Enabled" if (features.get(name) or {}).get("enabled") else "Disabled"

    node_port = features.get("nodePort") or {}
    devices = ", ".join(
        " ".join([str(d.get("name", "")), *d.get("ip", [])])
        + (" (Direct Routing)" if d.get("name") == kpr.get("directRoutingDevice") else "")
        for d in kpr.get("deviceList") or []
    )
    head: list[list[str]] = [
        ["  Status:", str(kpr.get("mode", "False"))],
        ["  Socket LB:", on("socketLB")],
        ["  Socket LB Tracing:", on("socketLBTracing")],
        [
            "  Socket LB Coverage:",
            "Hostns-only" if features.get("bpfSocketLBHostnsOnly") else "Full",
        ],
    ]
    if kpr.get("mode") == "True":
        head.append(["  Devices:", devices])
    if node_port.get("enabled"):
        mode = str(node_port.get("mode", "SNAT"))
        head.append(["  Mode:", mode])
        if mode != "SNAT":
            head.append(["    DSR Dispatch Mode:", str(node_port.get("dsrMode", ""))])
        selection = str(node_port.get("algorithm", "Random"))
        if selection == "Maglev":
            selection += f" (Table Size: {node_port.get('lutSize')})"
        head.append(["  Backend Selection:", selection])
    head.append(["  Session Affinity:", on("sessionAffinity")])
    head.append(["  NAT46/64 Support:", on("nat46X64")])
    if node_port.get("enabled"):
        head.append(["  XDP Acceleration:", str(node_port.get("acceleration", "None"))])
    port_range = f"{node_port.get('portMin')}-{node_port.get('portMax')}"
    services = [
        ["  - ClusterIP:", "Enabled"],
        [
            "  - NodePort:",
            f"Enabled (Range: {port_range})" if node_port.get("enabled") else "Disabled",
        ],
        ["  - LoadBalancer:", on("nodePort")],
        ["  - externalIPs:", on("externalIPs")],
        ["  - HostPort:", on("hostPort")],
    ]
    annotations = list(features.get("annotations") or [])
    return [
        "KubeProxyReplacement Details:",
        *tabwrite(head, padding=3),
        "  Services:",
        *tabwrite(services, padding=3),
        "  Annotations:" if annotations else "  Annotations:   (n/a)",
        *(f"  - {a}" for a in annotations),
    ]
