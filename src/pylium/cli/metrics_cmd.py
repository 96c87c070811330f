"""L7: ``pylium metrics list --node N``, in the shape of ``cilium-dbg metrics list``: the
agent's metrics (``cilium_*``, and ``hubble_*`` when its handlers are on) read from its API,
whether or not the Prometheus endpoints are served; ``-p`` keeps names matching a regex."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pylium.adapters.agentapi import AgentClient
from pylium.cli.common import print_table
from pylium.lab import cluster

metrics_app = typer.Typer(help="Metrics of a node's agent.")


def labels_text(labels: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(labels.items()))


@metrics_app.command("list")
def list_(
    node: Annotated[str, typer.Option("--node", help="Node whose agent to ask.")],
    lab: Annotated[str | None, typer.Option("--lab")] = None,
    match: Annotated[
        str, typer.Option("-p", "--match-pattern", help="Only metric names matching this regex.")
    ] = "",
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """Metric, Labels, Value: every sample the agent's registries hold now."""
    query = {"match": match} if match else {}
    samples = AgentClient(cluster.agent_socket(node, lab)).get("/v1/metrics", **query)
    if output == "json":
        typer.echo(json.dumps(samples, indent=2))
        return
    rows = [
        [s["name"], labels_text(s.get("labels") or {}), f"{float(s['value']):f}"]
        for s in sorted(samples, key=lambda s: (s["name"], labels_text(s.get("labels") or {})))
    ]
    print_table(["Metric", "Labels", "Value"], rows)


def register(app: typer.Typer) -> None:
    app.add_typer(metrics_app, name="metrics")
