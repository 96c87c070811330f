"""L7: ``pylium identity list|get|allocate|release``, in the shape of ``cilium-dbg identity``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pylium.adapters.agentapi import AgentClient
from pylium.cli.common import dump, fail, resource_client
from pylium.core.identity.numeric import ReservedIdentity
from pylium.lab import cluster

identity_app = typer.Typer(help="Security identities: numbers for label sets, cluster-wide.")


def _rows(ctx: typer.Context) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"id": int(r), "labels": [r.label]}
        for r in ReservedIdentity
        if r is not ReservedIdentity.UNKNOWN
    ]
    with resource_client(ctx) as client:
        for res in client.list("CiliumIdentity")[0]:
            labels = [
                f"{k}={v}" if v else k for k, v in (res.body.get("security-labels") or {}).items()
            ]
            rows.append({"id": int(res.name), "labels": sorted(labels)})
    return sorted(rows, key=lambda r: r["id"])


def _print(rows: list[dict[str, Any]]) -> None:
    """``cilium-dbg identity list``: ID, then one label per line."""
    typer.echo(f"{'ID':<8}LABELS")
    for row in rows:
        for i, label in enumerate(row["labels"] or [""]):
            typer.echo(f"{str(row['id']) if i == 0 else '':<8}{label}")


@identity_app.command("list")
def list_(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json|yaml")] = "text",
) -> None:
    """Every identity: the reserved ones and those allocated in the cluster."""
    rows = _rows(ctx)
    if output in ("json", "yaml"):
        typer.echo(dump(rows, output).rstrip())
    else:
        _print(rows)


@identity_app.command()
def get(
    ctx: typer.Context,
    identity: Annotated[int, typer.Argument()],
    output: Annotated[str, typer.Option("-o", "--output", help="text|json|yaml")] = "text",
) -> None:
    """One identity by number."""
    rows = [r for r in _rows(ctx) if r["id"] == identity]
    if not rows:
        fail([f"identity {identity} not found"])
    if output in ("json", "yaml"):
        typer.echo(dump(rows[0], output).rstrip())
    else:
        _print(rows)


@identity_app.command()
def allocate(
    node: Annotated[str, typer.Option("--node", help="Node whose agent allocates.")],
    labels: Annotated[list[str], typer.Option("--label", help="source:key=value, repeatable.")],
    lab: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Allocate (or reference) the identity of a label set through a node's agent."""
    answer = AgentClient(cluster.agent_socket(node, lab)).post("/v1/identity", {"labels": labels})
    typer.echo(json.dumps(answer))


@identity_app.command()
def release(
    node: Annotated[str, typer.Option("--node")],
    identity: Annotated[int, typer.Argument()],
    lab: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Drop one reference a node holds on an identity."""
    answer = AgentClient(cluster.agent_socket(node, lab)).delete(f"/v1/identity/{identity}")
    typer.echo(json.dumps(answer))


def register(app: typer.Typer) -> None:
    app.add_typer(identity_app, name="identity")
