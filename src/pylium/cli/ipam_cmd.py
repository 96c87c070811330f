"""L7: ``pylium ipam``: per-node pod CIDRs and usage, and IP requests to a node's agent."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any

import typer

from pylium.adapters.agentapi import AgentClient
from pylium.cli.common import print_table, resource_client
from pylium.core.ipam.multipool import DEFAULT_POOL, usable
from pylium.lab import cluster

ipam_app = typer.Typer(help="IP address management: node CIDRs, pod IP allocations.")

NodeArg = Annotated[str, typer.Option("--node", help="Node whose agent to ask.")]
LabOption = Annotated[str | None, typer.Option("--lab", help="Lab name (default: current).")]


@ipam_app.command()
def status(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """Per node: pod CIDRs, used/free addresses, operator errors (from the store)."""
    rows: list[dict[str, Any]] = []
    with resource_client(ctx) as client:
        nodes, _ = client.list("CiliumNode")
        for node in nodes:
            spec_ipam = node.body.get("spec", {}).get("ipam", {}) or {}
            st = (node.body.get("status", {}) or {}).get("ipam", {}) or {}
            used_map = st.get("used") or {}
            by_pool = {DEFAULT_POOL: list(spec_ipam.get("podCIDRs") or [])}
            for entry in (spec_ipam.get("pools") or {}).get("allocated") or []:
                by_pool[entry["pool"]] = list(entry.get("cidrs") or [])
            error = (st.get("operator-status") or {}).get("error", "")
            for pool, cidrs in sorted(by_pool.items()):
                if pool == DEFAULT_POOL and not cidrs and len(by_pool) > 1:
                    continue
                capacity = sum(usable(ipaddress.ip_network(c)) for c in cidrs)
                used = sum(1 for e in used_map.values() if e.get("pool", DEFAULT_POOL) == pool)
                rows.append(
                    {
                        "node": node.name,
                        "pool": pool,
                        "cidrs": cidrs,
                        "cidr-status": {
                            k: v.get("status") for k, v in (st.get("pod-cidrs") or {}).items()
                        },
                        "used": used,
                        "free": capacity - used,
                        "error": error,
                    }
                )
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    print_table(
        ["NODE", "POOL", "CIDRS", "USED", "FREE", "ERROR"],
        [
            [
                r["node"],
                r["pool"],
                ",".join(r["cidrs"]) or "<none>",
                str(r["used"]),
                str(r["free"]),
                r["error"],
            ]
            for r in rows
        ],
    )


@ipam_app.command()
def allocate(
    node: NodeArg,
    owner: Annotated[str, typer.Option("--owner", help="namespace/pod")],
    ip: Annotated[str | None, typer.Option("--ip", help="A specific address.")] = None,
    lab: LabOption = None,
) -> None:
    """Ask a node's agent for a pod IP (what the CNI plugin does on ADD)."""
    client = AgentClient(cluster.agent_socket(node, lab))
    if ip:
        answer = client.post(f"/v1/ipam/{ip}", owner=owner)
    else:
        answer = client.post("/v1/ipam", owner=owner)
    typer.echo(json.dumps(answer, indent=2))


@ipam_app.command()
def release(node: NodeArg, ip: Annotated[str, typer.Argument()], lab: LabOption = None) -> None:
    """Release a pod IP on a node (releasing an unknown IP is harmless)."""
    answer = AgentClient(cluster.agent_socket(node, lab)).delete(f"/v1/ipam/{ip}")
    typer.echo("released" if answer["released"] else "not allocated (nothing to do)")


@ipam_app.command()
def check(node: NodeArg, ip: Annotated[str, typer.Argument()], lab: LabOption = None) -> None:
    """Who holds an IP on a node (what the CNI plugin does on CHECK); exit 1 if nobody."""
    answer = AgentClient(cluster.agent_socket(node, lab)).get(f"/v1/ipam/{ip}")
    typer.echo(f"{answer['ip']} {answer['owner']}")


def register(app: typer.Typer) -> None:
    app.add_typer(ipam_app, name="ipam")
