"""L7: ``pylium endpoint list --node N``, in the shape of ``cilium-dbg endpoint list``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pylium.adapters.agentapi import AgentClient
from pylium.lab import cluster

endpoint_app = typer.Typer(help="Endpoints of a node (ask its agent).")


@endpoint_app.command("list")
def list_(
    node: Annotated[str, typer.Option("--node", help="Node whose agent to ask.")],
    lab: Annotated[str | None, typer.Option("--lab")] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """ENDPOINT, POLICY enforcement, IDENTITY, LABELS (one per line), IPv4, STATUS."""
    records = AgentClient(cluster.agent_socket(node, lab)).get("/v1/endpoint")
    if output == "json":
        typer.echo(json.dumps(records, indent=2))
        return
    header = f"{'ENDPOINT':<10}{'POLICY (ingress)':<18}{'POLICY (egress)':<17}{'IDENTITY':<10}"
    typer.echo(f"{header}{'LABELS (source:key[=value])':<50}{'IPv4':<16}STATUS")
    typer.echo(f"{'':<10}{'ENFORCEMENT':<18}{'ENFORCEMENT':<17}")
    for rec in sorted(records, key=lambda r: r["endpoint_id"]):
        labels = rec["labels"] or [""]
        for i, label in enumerate(labels):
            if i == 0:
                policy = rec.get("policy") or {}
                ingress = "Enabled" if policy.get("ingress") else "Disabled"
                egress = "Enabled" if policy.get("egress") else "Disabled"
                row = f"{rec['endpoint_id']:<10}{ingress:<18}{egress:<17}{rec['identity']:<10}"
                typer.echo(f"{row}{label:<50}{rec['ipv4']:<16}ready")
            else:
                typer.echo(f"{'':<55}{label}")


def register(app: typer.Typer) -> None:
    app.add_typer(endpoint_app, name="endpoint")
