"""L7: ``pylium bpf policy get|ipcache list|lb list|nat list``: a node's pinned BPF maps read
directly (what the datapath uses, even while the agent is down), in the shape of
``cilium-dbg bpf ...``; ``bpf nat flush`` empties the NAT map as ``cilium-dbg bpf nat flush``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from pylium.adapters.maps import ipcache, lb, nat
from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.maps.base import open_pinned
from pylium.cli.common import fail, print_table
from pylium.core.conntrack import nat_dump_line
from pylium.core.lb.addr import Scope
from pylium.core.lb.translate import Rows, ServiceFlag, ServiceKey, flag_type
from pylium.core.policy.peers import port_proto
from pylium.lab import cluster

bpf_app = typer.Typer(help="A node's BPF maps, read from their pins.")
policy_app = typer.Typer(help="Endpoint policy maps.")
ipcache_app = typer.Typer(help="The IP cache (prefix -> identity, tunnel endpoint).")
bpf_app.add_typer(policy_app, name="policy")
bpf_app.add_typer(ipcache_app, name="ipcache")
lb_app = typer.Typer(help="Load-balancer maps (services, backends).")
bpf_app.add_typer(lb_app, name="lb")
maglev_app = typer.Typer(help="Maglev lookup tables.")
lb_app.add_typer(maglev_app, name="maglev")
nat_app = typer.Typer(help="NAT mapping tables.")
bpf_app.add_typer(nat_app, name="nat")

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


def lb_pins(node: str, lab: str | None) -> Path:
    """The node's pin directory, checked to hold the load-balancer maps."""
    path = _pins(node, lab)
    if not (path / lb.SERVICES).exists():
        fail([f"node {node} has no load-balancer maps at {path} (agent too old or starting)"])
    return path


def _flags_text(flags: int) -> str:
    """``ServiceFlags.String()``-like: the type, then the scopes and properties set."""
    words = [str(flag_type(flags))]
    for flag, word in (
        (ServiceFlag.EXT_LOCAL_SCOPE, "Local"),
        (ServiceFlag.INT_LOCAL_SCOPE, "InternalLocal"),
        (ServiceFlag.TWO_SCOPES, "two-scopes"),
        (ServiceFlag.SESSION_AFFINITY, "sessionAffinity"),
        (ServiceFlag.FWD_MODE_DSR, "dsr"),
    ):
        if flags & flag:
            words.append(word)
    if not flags & ServiceFlag.ROUTABLE:
        words.append("non-routable")
    return ", ".join(words)


def lb_list_lines(rows: Rows) -> list[tuple[str, str]]:
    """(SERVICE ADDRESS, BACKEND ADDRESS (REVNAT_ID) (SLOT)) per services-map entry, as
    ``cilium-dbg bpf lb list``: the master entry shows ``0.0.0.0:0`` and the flags."""

    def order(k: ServiceKey) -> tuple[tuple[int, int, int, str, int], int]:
        return (k.frontend.sort_key(), k.slot)

    out = []
    for key in sorted(rows.services, key=order):
        value = rows.services[key]
        scope = "/i" if key.scope is Scope.INTERNAL else ""
        service = f"{key.address}:{key.port}/{key.protocol}{scope} ({key.slot})"
        if key.slot == 0:
            backend = f"0.0.0.0:0 ({value.rev_nat_index}) (0) [{_flags_text(value.flags)}]"
        else:
            be = rows.backends.get(value.backend_id)
            shown = str(be.address) if be else f"backend {value.backend_id} missing"
            backend = f"{shown} ({value.rev_nat_index}) ({key.slot})"
        out.append((service, backend))
    return out


@lb_app.command("list")
def lb_list(node: NodeOption, lab: LabOption = None) -> None:
    """Every services-map entry with its backend, reverse-NAT ID and slot."""
    rows = lb.LBMaps.from_pins(lb_pins(node, lab)).read()
    print_table(
        ["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"],
        [list(line) for line in lb_list_lines(rows)],
    )


@maglev_app.command("list")
def maglev_list(node: NodeOption, lab: LabOption = None) -> None:
    """SVC ID and the service's whole lookup table of backend IDs, as ``cilium-dbg bpf lb
    maglev list``."""
    tables = lb.LBMaps.from_pins(lb_pins(node, lab)).read_maglev()
    print_table(
        ["SVC ID", "LUT"],
        [[str(rev), "[" + " ".join(map(str, t)) + "]"] for rev, t in sorted(tables.items())],
    )


def _nat_pin(node: str, lab: str | None) -> Path:
    path = _pins(node, lab) / nat.NAME
    if not path.exists():
        fail([f"node {node} has no NAT map at {path} (agent starting?)"])
    return path


@nat_app.command("list")
def nat_list(
    node: NodeOption,
    lab: LabOption = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """List all NAT mapping entries, as ``cilium-dbg bpf nat list``: the tuple, what it is
    translated to, and how long ago the entry was made."""
    if output not in ("text", "json"):
        fail([f"--output: {output!r} is not one of text, json"])
    entries = nat.NATMap(open_pinned(str(_nat_pin(node, lab)))).dump()
    ordered = sorted(
        entries.items(),
        key=lambda kv: (kv[0].nexthdr, kv[0].saddr, kv[0].sport, kv[0].daddr, kv[0].dport),
    )
    if output == "json":  # upstream's NatMapRecord fields
        records = [
            {
                "Key": {
                    "DestAddr": str(k.daddr),
                    "SourceAddr": str(k.saddr),
                    "DestPort": k.dport,
                    "SourcePort": k.sport,
                    "NextHeader": k.nexthdr,
                    "Flags": k.flags,
                },
                "Value": {
                    "Created": e.created,
                    "NeedsCT": e.needs_ct,
                    "Addr": str(e.address),
                    "Port": e.port,
                },
            }
            for k, e in ordered
        ]
        typer.echo(json.dumps(records, indent=2))
        return
    now = int(time.monotonic())  # the datapath's clock (bpf_ktime_get_ns), one per machine
    for key, entry in ordered:
        typer.echo(nat_dump_line(key, entry, now))


@nat_app.command("flush")
def nat_flush(node: NodeOption, lab: LabOption = None) -> None:
    """Flush all NAT mapping entries."""
    path = _nat_pin(node, lab)
    count = nat.NATMap(open_pinned(str(path))).flush()
    typer.echo(f"Flushed {count} entries from {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(bpf_app, name="bpf")
