"""L7: ``pylium status`` (the cluster, as ``cilium status``; one node with ``--node``, as
``cilium-dbg status``) and ``pylium health`` (as ``cilium-health status``).

The cluster view reads the store only (Node, CiliumNode, Pod and CiliumEndpoint resources,
the heartbeat and leader leases, the agents' health reports), so it works with every agent
down; the node view asks that node's agent over its API socket (``GET /v1/status``), and the
health view asks an agent (``GET /v1/health``, ``PUT /v1/health/probe``) or, without
``--node``, reads every live agent's last report from the store.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from pylium import __version__
from pylium.adapters.agentapi import AgentClient
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.adapters.store.factory import open_store
from pylium.base.errors import AgentUnavailable, PyliumError, StoreUnavailable
from pylium.cli.common import dump, store_url
from pylium.core.health import HealthReport, format_health_status, merge_cluster
from pylium.core.status import (
    ClusterStatus,
    cluster_status,
    failing,
    format_status_response,
    render_cluster_status,
)
from pylium.lab import cluster
from pylium.model.config import Duration
from pylium.operator.main import LEADER_KEY
from pylium.runtime.nodekeys import (
    HEALTH_PREFIX,
    HEARTBEAT_PREFIX,
    OPERATOR_INSTANCES_PREFIX,
    OPERATOR_REPLICAS_KEY,
)

OutputOption = Annotated[str, typer.Option("-o", "--output", help="text|json|yaml")]
LabOption = Annotated[str | None, typer.Option("--lab", help="Lab name (default: current).")]


def health_reports(store: Store) -> dict[str, HealthReport]:
    """Every live agent's last health report (``nodes/health/<node>``; corrupt ones skipped)."""
    out: dict[str, HealthReport] = {}
    for kv in store.list(HEALTH_PREFIX).items:
        try:
            out[kv.key.removeprefix(HEALTH_PREFIX)] = HealthReport.from_json(json.loads(kv.value))
        except (ValueError, TypeError, AttributeError):
            continue
    return out


def gather(store: Store) -> ClusterStatus:
    client = ResourceClient(store)
    nodes = [r.name for r in client.list("Node")[0]]
    cilium_nodes = [r.name for r in client.list("CiliumNode")[0]]
    beats = [kv.key.removeprefix(HEARTBEAT_PREFIX) for kv in store.list(HEARTBEAT_PREFIX).items]
    leader_kv = store.get(LEADER_KEY)
    operators = [kv.value.decode() for kv in store.list(OPERATOR_INSTANCES_PREFIX).items]
    replicas_kv = store.get(OPERATOR_REPLICAS_KEY)
    pods = [
        (r.namespace, r.name)
        for r in client.list("Pod")[0]
        if not (r.body.get("spec") or {}).get("hostNetwork")
    ]
    endpoints = [(r.namespace, r.name) for r in client.list("CiliumEndpoint")[0]]
    return cluster_status(
        nodes=nodes,
        cilium_nodes=cilium_nodes,
        heartbeats=beats,
        leader=leader_kv.value.decode() if leader_kv else "",
        pods=pods,
        endpoints=endpoints,
        health_reports=health_reports(store),
        version=__version__,
        operators=operators,
        operator_replicas=int(replicas_kv.value)
        if replicas_kv and replicas_kv.value.isdigit()
        else 1,
    )


def _emit(data: Any, lines: list[str], output: str) -> None:
    if output in ("json", "yaml"):
        typer.echo(dump(data, output).rstrip())
    else:
        typer.echo("\n".join(lines))


def _cluster(
    ctx: typer.Context, *, wait: bool, wait_duration: float, output: str, ignore_warnings: bool
) -> None:
    url = store_url(ctx)
    deadline = time.monotonic() + wait_duration
    while True:
        problem = ""
        store = open_store(url)
        try:
            st: ClusterStatus | None = gather(store)
        except StoreUnavailable as err:
            if not wait:
                print(
                    f"Error: Unable to determine status: {err}\n"
                    "  The store is failing: check that it is up (`pylium lab status`; the "
                    "lab's etcd.log for an etcd lab; no other process holding the SQLite file "
                    "locked for a local one). Agents keep forwarding meanwhile and catch up "
                    "when it is back.",
                    file=sys.stderr,
                )
                raise typer.Exit(1) from None
            st, problem = None, str(err)
        except PyliumError as err:
            if not wait:
                raise
            st, problem = None, str(err)
        finally:
            store.close()
        # As cilium-cli: --wait also waits for warnings (a node's first health probe of a
        # peer that is still starting) to clear, unless --ignore-warnings.
        if st is not None and (not wait or (st.ready and (ignore_warnings or not st.warnings))):
            _emit(st.to_json(), render_cluster_status(st), output)
            return
        if time.monotonic() > deadline:
            if st is not None:
                _emit(st.to_json(), render_cluster_status(st), output)
                problem = "; ".join(p.message for p in st.errors) or (
                    "not every agent is ready"
                    if not st.ready
                    else "warnings: " + "; ".join(p.message for p in st.warnings)
                )
            print(
                f"Error: Unable to determine status: not ready after {wait_duration:g}s: {problem}",
                file=sys.stderr,
            )
            raise typer.Exit(1)
        time.sleep(1.0)


def _agent(node: str, lab: str | None, timeout: float = 10.0) -> AgentClient:
    return AgentClient(cluster.agent_socket(node, lab), timeout=timeout)


def _unreachable(node: str, lab: str | None, err: AgentUnavailable) -> None:
    name = lab or cluster.current_lab() or "<lab>"
    print(
        f"Error: Unable to reach out to the agent of node {node}: {err}\n"
        f"  Is the agent running? Check `pylium lab status --name {name}`, read "
        f"{cluster.agent_socket(node, lab).with_name('agent.log')}, restart it with "
        f"`pylium lab restart {node} --name {name}`",
        file=sys.stderr,
    )
    raise typer.Exit(1)


def status(
    ctx: typer.Context,
    node: Annotated[
        str | None, typer.Option("--node", help="One node's status, from its agent.")
    ] = None,
    lab: LabOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Every controller and every node's health.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until everything is ready.")] = False,
    wait_duration: Annotated[
        str, typer.Option("--wait-duration", help="How long --wait waits (Go duration).")
    ] = "5m",
    ignore_warnings: Annotated[
        bool,
        typer.Option(
            "--ignore-warnings", help="Ignore warnings when waiting for status to report success."
        ),
    ] = False,
    output: OutputOption = "text",
) -> None:
    """Cluster status as `cilium status`; with --node, a node's as `cilium-dbg status`."""
    if output not in ("text", "json", "yaml"):
        raise typer.BadParameter("allowed: text, json, yaml", param_hint="--output")
    try:
        seconds = Duration().parse(wait_duration).total_seconds()
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--wait-duration") from err
    if node is None:
        _cluster(
            ctx,
            wait=wait,
            wait_duration=seconds,
            output=output,
            ignore_warnings=ignore_warnings,
        )
        return
    try:
        resp = _agent(node, lab).get("/v1/status")
    except AgentUnavailable as err:
        _unreachable(node, lab, err)
        return
    _emit(resp, format_status_response(resp, verbose=verbose), output)
    if failing(resp):
        raise typer.Exit(1)


def health(
    ctx: typer.Context,
    node: Annotated[
        str | None, typer.Option("--node", help="Ask this node's agent (default: the store).")
    ] = None,
    lab: LabOption = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="Probe every node now (with --node).")
    ] = False,
    succinct: Annotated[bool, typer.Option("--succinct", help="One line per node.")] = False,
    output: OutputOption = "text",
) -> None:
    """Per-node reachability and latencies (ICMP and HTTP :4240), as `cilium-health status`."""
    if node is not None:
        try:
            client = _agent(node, lab, timeout=30.0)
            data = client.request("PUT", "/v1/health/probe") if probe else client.get("/v1/health")
        except AgentUnavailable as err:
            _unreachable(node, lab, err)
            return
        report = HealthReport.from_json(data)
        _emit(data, format_health_status(report, succinct=succinct), output)
        return
    if probe:
        raise typer.BadParameter("--probe needs --node (the agent that probes)")
    store = open_store(store_url(ctx))
    try:
        reports = health_reports(store)
        nodes = [r.name for r in ResourceClient(store).list("Node")[0]]
    finally:
        store.close()
    merged = merge_cluster(nodes, reports)
    lines = [f"Cluster health: {merged.line()}"]
    for name, why in merged.unreachable:
        lines.append(f"  {name}: {why}")
    for agent, report in sorted(reports.items()):
        lines.append("")
        lines.append(f"From {agent}:")
        lines.extend("  " + ln for ln in format_health_status(report, succinct=succinct))
    data = {
        "cluster": merged.to_json(),
        "reports": {agent: r.to_json() for agent, r in sorted(reports.items())},
    }
    _emit(data, lines, output)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("health")(health)
