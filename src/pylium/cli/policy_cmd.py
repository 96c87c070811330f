"""L7: ``pylium policy get|selectors|explain``: the rules in force, what each selector selects,
and why a connection is allowed or dropped, all computed from the store with the same core the
agents use to fill their policy maps.

The policy configuration (``enable-policy``, ``policy-audit-mode``, ``enable-host-firewall``,
``cluster-name``) is the current lab's ``config.json`` when the store is a lab's; otherwise
upstream's defaults, which ``--enforcement-mode`` and ``--audit`` override.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from typing import Annotated

import typer

from pylium.adapters.resources import ResourceClient
from pylium.cli.common import dump, fail, print_table, resource_client
from pylium.core.identity.labels import LabelFilter, host_labels
from pylium.core.identity.numeric import ReservedIdentity
from pylium.core.policy import cidr
from pylium.core.policy.peers import CIDRSelector, Direction, peer_selectors, sections
from pylium.core.policy.resolve import EnforcementMode, PolicyConfig
from pylium.core.policy.selectorcache import SelectorCache, reserved_identities
from pylium.core.selectors import LabelSet
from pylium.lab import cluster
from pylium.model.config import AgentSettings
from pylium.runtime import policy as cluster_policy
from pylium.runtime.daemon import read_configmap

policy_app = typer.Typer(help="Network policy: rules in force, selectors, verdicts explained.")

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "any": 0}


def _settings() -> AgentSettings:
    lab = cluster.current_lab()
    configmap = read_configmap(cluster.state_dir(lab) / "config.json") if lab else {}
    return AgentSettings.from_configmap(configmap)


def _config(mode: str | None, audit: bool | None) -> PolicyConfig:
    config = cluster_policy.policy_config(_settings())
    if mode is not None:
        config = dataclasses.replace(config, mode=EnforcementMode(mode))
    if audit is not None:
        config = dataclasses.replace(config, audit=audit)
    return config


@policy_app.command("get")
def get(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", help="yaml|json")] = "yaml",
) -> None:
    """The policy objects in force (CNP, CCNP, NetworkPolicy) and the repository revision."""
    with resource_client(ctx) as client:
        objects = [r.body for kind in cluster_policy.POLICY_KINDS for r in client.list(kind)[0]]
        snap = cluster_policy.snapshot(client, _config(None, None).cluster_name)
    typer.echo(dump({"revision": snap.repository.revision, "policies": objects}, output))


def _selector_cache(snap: cluster_policy.PolicySnapshot, cluster_name: str) -> SelectorCache:
    cache = SelectorCache({**reserved_identities(), **snap.identities})
    for rule in snap.repository.rules():
        for direction in Direction:
            for deny in (False, True):
                for section in sections(rule, direction, deny):
                    for selector in peer_selectors(section, cluster_name):
                        cache.select(selector)
    return cache


@policy_app.command("selectors")
def selectors_(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """Every peer selector of the rules in force and the identities it selects (CIDR
    selectors select the node-local CIDR identities agents allocate, shown by prefix)."""
    config = _config(None, None)
    with resource_client(ctx) as client:
        snap = cluster_policy.snapshot(client, config.cluster_name)
    cache = _selector_cache(snap, config.cluster_name)
    rows: list[tuple[str, list[int | str]]] = []
    for selector, identities in cache.selections().items():
        found: list[int | str] = list(sorted(identities))
        if isinstance(selector, CIDRSelector):
            # CIDR identities are node-local numbers: name them by their prefix.
            found += sorted(
                f"cidr:{p}"
                for p in snap.prefixes
                if selector.matches(LabelSet.parse(cidr.cidr_labels(p)))
            )
        rows.append((str(selector), found))
    rows.sort(key=lambda row: row[0])
    if output == "json":
        typer.echo(json.dumps([{"selector": s, "identities": i} for s, i in rows], indent=2))
        return
    print_table(
        ["SELECTOR", "IDENTITIES"],
        [[s or "{} (all)", " ".join(map(str, i)) or "-"] for s, i in rows],
    )


def _peer(
    client: ResourceClient, snap: cluster_policy.PolicySnapshot, text: str, namespace: str
) -> cluster_policy.Peer:
    """A pod (``name`` or ``ns/name``), a node's host (``host:NODE``, the host endpoint, whose
    policy is the host firewall's), an identity number, or an IP address/CIDR."""
    if text.startswith("host:"):
        node = client.get("Node", text.removeprefix("host:"))
        if node is None:
            fail([f"{text}: no such node"])
        assert node is not None
        host = host_labels(dict(node.labels), LabelFilter.from_user(_settings().labels))
        ident = int(ReservedIdentity.HOST)
        return cluster_policy.Peer(text, ident, host, namespace="", pod=f"host:{node.name}")
    if text.isdigit():
        ident = int(text)
        labels = {**reserved_identities(), **snap.identities}.get(ident)
        if labels is None:
            fail([f"identity {ident} does not exist"])
        assert labels is not None
        return cluster_policy.Peer(f"identity {ident}", ident, labels)
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        net = None
    if net is not None:
        if not isinstance(net, ipaddress.IPv4Network):
            fail([f"{text}: only IPv4 is supported"])
        assert isinstance(net, ipaddress.IPv4Network)
        labels = cidr.labels_for_address(net.network_address, snap.prefixes)
        world = int(ReservedIdentity.WORLD)
        return cluster_policy.Peer(f"{text} ({', '.join(sorted(labels))})", world, labels)
    ns, _, name = text.rpartition("/")
    ns = ns or namespace
    cep = client.get("CiliumEndpoint", name, ns)
    if cep is None:
        fail([f"pod {ns}/{name} has no CiliumEndpoint (is it running on a pylium node?)"])
    assert cep is not None
    identity = (cep.body.get("status") or {}).get("identity") or {}
    return cluster_policy.Peer(
        f"{ns}/{name}",
        int(identity.get("id", 0)),
        frozenset(identity.get("labels") or ()),
        namespace=ns,
        pod=name,
    )


def _port(text: str) -> tuple[int, int]:
    port, _, proto = text.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail([f"--port {text}: use PORT/PROTO with PROTO one of {', '.join(PROTOCOLS)}"])
    return PROTOCOLS[proto], int(port)


@policy_app.command("explain")
def explain(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="POD, ns/POD, IDENTITY or IP/CIDR.")],
    destination: Annotated[
        str, typer.Option("--to", help="POD, ns/POD, host:NODE, IDENTITY or IP/CIDR.")
    ],
    port: Annotated[str, typer.Option("--port", help="PORT/PROTO, e.g. 80/tcp (ICMP: type).")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    mode: Annotated[
        str | None, typer.Option("--enforcement-mode", help="default|always|never")
    ] = None,
    audit: Annotated[bool | None, typer.Option("--audit/--no-audit")] = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """Whether a connection is allowed, and exactly which rules decided (exit 1 if denied)."""
    if mode is not None and mode not in {m.value for m in EnforcementMode}:
        fail([f"--enforcement-mode {mode}: use default, always or never"])
    proto, port_number = _port(port)
    config = _config(mode, audit)
    with resource_client(ctx) as client:
        snap = cluster_policy.snapshot(client, config.cluster_name)
        src = _peer(client, snap, source, namespace)
        dst = _peer(client, snap, destination, namespace)
    if src.namespace is None and dst.namespace is None:
        fail(["one side must be a pod: policy belongs to endpoints"])
    result = cluster_policy.explain_path(snap, config, src, dst, proto, port_number)
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "allowed": result.allowed,
                    "steps": [
                        {
                            "where": where,
                            "verdict": str(e.verdict),
                            "drop_reason": int(e.drop_reason) if e.drop_reason else None,
                            "rules": [str(o) for o in e.matched],
                            "summary": e.summary,
                        }
                        for where, e in result.steps
                    ],
                },
                indent=2,
            )
        )
    else:
        typer.echo(result.render())
    if not result.allowed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
