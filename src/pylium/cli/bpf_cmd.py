"""L7: ``pylium bpf policy get|ipcache list``: a node's pinned BPF maps read directly (what the
datapath uses, even while the agent is down), in the shape of ``cilium-dbg bpf ...``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pylium.adapters.maps import ipcache
from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.maps.base import open_pinned
from pylium.cli.common import fail, print_table
from pylium.core.policy.peers import port_proto
from pylium.lab import cluster

bpf_app = typer.Typer(help="A node's BPF maps, read from their pins.")
policy_app = typer.Typer(help="Endpoint policy maps.")
ipcache_app = typer.Typer(help="The IP cache (prefix -> identity, tunnel endpoint).")
bpf_app.add_typer(policy_app, name="policy")
bpf_app.add_typer(ipcache_app, name="ipcache")

NodeOption = Annotated[str, typer.Option("--node", help="The node whose maps to read.")]
LabOption = Annotated[str | None, typer.Option("--lab", help="Default: the current lab.")]


def _pins(node: str, lab: str | None) -> Path:
    name = lab or cluster.current_lab()
    if name is None:
        fail(["no current lab: run `pylium lab up` or pass --lab"])
    assert name is not None
    path = cluster.bpf_dir(name) / node
    if not path.is_dir():
        fail([f"node {node} of lab {name} has no BPF pins at {path}"])
    return path


def _labels(identity: int, known: dict[int, list[str]]) -> str:
    if identity == 0:
        return "ANY"
    return ", ".join(known.get(identity, [])) or f"identity {identity}"


@policy_app.command("get")
def policy_get(
    endpoint: Annotated[int, typer.Argument(help="Endpoint ID (pylium endpoint list).")],
    node: NodeOption,
    lab: LabOption = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """POLICY, DIRECTION, IDENTITY, PORT/PROTO and prefix of each entry of the endpoint's map."""
    maps = policy_maps.PolicyMaps(open_pinned(str(_pins(node, lab) / policy_maps.NAME)))
    state = maps.read(endpoint)
    if state is None:
        fail([f"endpoint {endpoint} on {node} has no policy map (policy not wired for it)"])
    assert state is not None
    entries = sorted(state.entries.items())
    if output == "json":
        rows = [
            {
                "policy": "Deny" if e.deny else "Allow",
                "direction": k.direction.name.capitalize(),
                "identity": k.identity,
                "port": port_proto(k.proto, *k.port_range) if k.proto else "ANY",
                "prefix": k.lpm_len,
            }
            for k, e in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    print_table(
        ["POLICY", "DIRECTION", "IDENTITY", "PORT/PROTO", "PREFIX"],
        [
            [
                "Deny" if e.deny else "Allow",
                k.direction.name.capitalize(),
                "ANY" if k.identity == 0 else str(k.identity),
                port_proto(k.proto, *k.port_range) if k.proto else "ANY",
                str(k.lpm_len),
            ]
            for k, e in entries
        ],
    )


@ipcache_app.command("list")
def ipcache_list(node: NodeOption, lab: LabOption = None) -> None:
    """IP PREFIX/ADDRESS, IDENTITY (and tunnel endpoint), as ``cilium-dbg bpf ipcache list``."""
    cache = ipcache.IPCacheMap(open_pinned(str(_pins(node, lab) / ipcache.NAME)))
    rows = []
    for prefix, entry in sorted(cache.dump().items(), key=lambda kv: kv[0]):
        tunnel = f" tunnelendpoint={entry.tunnel_endpoint}" if entry.tunnel_endpoint else ""
        rows.append([str(prefix), f"identity={entry.identity} encryptkey={entry.key}{tunnel}"])
    print_table(["IP PREFIX/ADDRESS", "IDENTITY"], rows)


def register(app: typer.Typer) -> None:
    app.add_typer(bpf_app, name="bpf")
