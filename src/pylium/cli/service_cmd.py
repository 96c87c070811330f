"""L7: ``pylium service list --node N``: the node's load-balancer frontends and backends in
``cilium-dbg service list``'s format (ID, Frontend, Service Type, Backend), read from the
node's pinned maps (what the datapath uses, even while the agent is down)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pylium.adapters.maps import lb
from pylium.cli.bpf_cmd import LabOption, NodeOption, lb_pins
from pylium.core.lb.listing import format_service_list, service_list_lines

service_app = typer.Typer(help="Services (load-balancer frontends) of a node.")


@service_app.command("list")
def list_(
    node: NodeOption,
    lab: LabOption = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """ID, Frontend, Service Type and numbered backends with their states."""
    rows = lb.LBMaps.from_pins(lb_pins(node, lab)).read()
    if output == "json":
        lines = service_list_lines(rows)[1:]
        out: list[dict[str, object]] = []
        for sid, frontend, typ, backend in lines:
            if sid:
                out.append({"id": int(sid), "frontend": frontend, "type": typ, "backends": []})
            if backend and out:
                backends = out[-1]["backends"]
                assert isinstance(backends, list)
                backends.append(backend.split(" => ", 1)[1])
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(format_service_list(rows), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
