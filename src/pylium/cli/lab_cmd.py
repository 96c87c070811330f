"""L7: ``pylium lab up|status|down``: a multi-node cluster out of network namespaces."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pylium.base.errors import ConfigError
from pylium.cli.common import fail, print_table
from pylium.core.cni import CniError, parse_port_mappings
from pylium.lab import cluster
from pylium.model.config import ConfigErrors
from pylium.runtime.settings import load

lab_app = typer.Typer(
    help="Build and tear down a local multi-node lab cluster.", no_args_is_help=True
)

NameOption = Annotated[str, typer.Option("--name", help="Lab name (1-8 lowercase letters/digits).")]


@lab_app.command()
def up(
    nodes: Annotated[int, typer.Option("--nodes", help="Number of nodes (n1..nN).")] = 2,
    store: Annotated[str, typer.Option("--store", help="local (SQLite) or etcd.")] = "local",
    name: NameOption = "lab",
    sets: Annotated[list[str] | None, typer.Option("--set", help="Helm value a.b=c.")] = None,
    values: Annotated[
        list[str] | None, typer.Option("-f", "--values", help="Helm values file.")
    ] = None,
    topology: Annotated[
        str,
        typer.Option(
            "--topology",
            help="flat (nodes share an L2 fabric) or router (the fabric routes the pod CIDRs; "
            "nodes' default route points at it).",
        ),
    ] = "flat",
    mtu: Annotated[
        int, typer.Option("--mtu", help="MTU of the underlay (9000 for jumbo frames).")
    ] = 1500,
    operator_replicas: Annotated[
        int | None,
        typer.Option(
            "--operator-replicas",
            help="Operators to run, one leading (default: Helm operator.replicas, else 1).",
        ),
    ] = None,
    ipam: Annotated[
        str | None,
        typer.Option(
            "--ipam",
            help="IPAM mode (Helm ipam.mode); eni is eni.enabled=true: the lab becomes a VPC "
            "around a moto EC2 server (docs/ipam-eni.md).",
        ),
    ] = None,
) -> None:
    """Create the lab: fabric, nodes, store, agents and operator; make it the current context."""
    from pathlib import Path

    mode = ["eni.enabled=true"] if ipam == "eni" else [f"ipam.mode={ipam}"] if ipam else []
    try:
        resolved = load(values_files=[Path(v) for v in values or []], sets=mode + (sets or []))
    except ConfigErrors as err:
        fail(err.lines())
    except ConfigError as err:
        fail([str(err)])
    for warning in resolved.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    state = cluster.up(
        name=name,
        nodes=nodes,
        store=store,
        configmap=resolved.as_configmap(),
        topology=topology,
        mtu=mtu,
        operator_replicas=operator_replicas or resolved.operator_replicas,
    )
    typer.echo(
        f"lab {state.name} is up: {len(state.nodes)} nodes, "
        f"{state.operator_replicas} operator(s), store {state.store_url}"
    )
    typer.echo("pylium commands now talk to this lab (pylium lab down to remove it)")


@lab_app.command()
def status(
    name: NameOption = "lab",
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
) -> None:
    """Show the lab's nodes, agents, operator and store; exit 1 when anything is unhealthy."""
    report = cluster.status(name)
    if output == "json":
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(f"Lab:      {report.name}")
        typer.echo(f"Store:    {report.store_url}")
        op = report.operator
        typer.echo(
            f"Operator: {op['ready']}/{op['desired']} running, leader: {op['leader'] or 'none'}"
        )
        for replica in op["replicas"]:
            typer.echo(
                f"  {replica['role']}: pid {replica['pid']}"
                + ("" if replica["running"] else " (dead)")
                + (" (leader)" if replica["leader"] else "")
            )
        rows = [
            [
                n["name"],
                n["address"] + ("" if n["address_present"] else " (missing)"),
                "yes" if n["netns"] else "MISSING",
                f"{n['agent_pid']}" + ("" if n["agent_running"] else " (dead)"),
                "yes" if n["registered"] else "no",
                "yes" if n["heartbeat"] else "no",
            ]
            for n in report.nodes
        ]
        print_table(["NODE", "ADDRESS", "NETNS", "AGENT-PID", "REGISTERED", "HEARTBEAT"], rows)
        for problem in report.problems:
            typer.echo(f"Problem: {problem}")
    if not report.healthy:
        raise typer.Exit(1)


@lab_app.command()
def down(
    name: NameOption = "lab",
    force: Annotated[bool, typer.Option("--force", help="Clean up after a crash.")] = False,
) -> None:
    """Remove everything the lab created (processes, namespaces, links, state)."""
    removed = cluster.down(name, force=force)
    typer.echo(f"lab {name} removed ({len(removed)} objects)")


@lab_app.command()
def restart(
    target: Annotated[
        str,
        typer.Argument(help="A node (its agent) or an operator replica (operator, operator-2...)."),
    ],
    name: NameOption = "lab",
    kill: Annotated[bool, typer.Option("--kill", help="SIGKILL it first, like a crash.")] = False,
) -> None:
    """Restart a node's agent or the operator; state is restored from the store."""
    pid = cluster.restart(name, target, kill=kill)
    typer.echo(f"{target} restarted (pid {pid})")


node_app = typer.Typer(help="Nodes joining or leaving the lab.", no_args_is_help=True)
lab_app.add_typer(node_app, name="node")


@node_app.command("add")
def node_add(
    node: Annotated[str, typer.Argument(help="New node's name (e.g. n3).")],
    name: NameOption = "lab",
) -> None:
    """Add a node: its namespace on the fabric and its agent; waits until it is registered."""
    info = cluster.add_node(name, node)
    typer.echo(f"node {node} added: {info['address']}")


@node_app.command("remove")
def node_remove(
    node: Annotated[str, typer.Argument(help="The node to remove.")],
    name: NameOption = "lab",
) -> None:
    """Remove a node from the cluster: its pods, agent and namespace, and its Node and
    CiliumNode (the operator frees its pod CIDR; other nodes drop its routes)."""
    removed = cluster.remove_node(name, node)
    typer.echo(f"node {node} removed ({len(removed)} objects)")


pod_app = typer.Typer(
    help="Pods in the lab: a namespace plumbed by pylium-cni.", no_args_is_help=True
)
lab_app.add_typer(pod_app, name="pod")


@pod_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pod_run(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="Pod name.")],
    node: Annotated[str, typer.Option("--node", help="Node to run on.")],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    labels: Annotated[str, typer.Option("--labels", "-l", help="k=v,k2=v2")] = "",
    hostport: Annotated[
        list[str] | None,
        typer.Option("--hostport", help="HOSTPORT:CONTAINERPORT[/tcp|udp] (repeatable)."),
    ] = None,
    name: NameOption = "lab",
) -> None:
    """Run a pod like ``docker run -d``: namespace, CNI ADD, then ``-- CMD...`` detached."""
    mappings = []
    for item in hostport or []:
        ports, _, proto = item.partition("/")
        host, sep, container = ports.partition(":")
        if not sep:
            fail([f"--hostport {item}: expected HOSTPORT:CONTAINERPORT[/tcp|udp]"])
        mappings.append({"hostPort": host, "containerPort": container, "protocol": proto or "tcp"})
    try:
        host_ports = parse_port_mappings(mappings)
    except CniError as err:
        fail([f"--hostport: {err.details}"])
    parsed = {}
    for item in filter(None, labels.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            fail([f"--labels {item}: expected key=value"])
        parsed[key] = value
    info = cluster.add_pod(
        name,
        node,
        pod,
        namespace=namespace,
        labels=parsed,
        command=ctx.args,
        host_ports=host_ports,
    )
    typer.echo(f"pod {namespace}/{pod} on {node}: {info['ip']}")


@pod_app.command("delete")
def pod_delete(
    pod: Annotated[str, typer.Argument()],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    name: NameOption = "lab",
) -> None:
    """Delete a pod: its process, CNI DEL, then its namespace."""
    cluster.delete_pod(name, pod, namespace=namespace)
    typer.echo(f"pod {namespace}/{pod} deleted")


@pod_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def pod_exec(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument()],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    name: NameOption = "lab",
) -> None:
    """Run ``-- CMD...`` inside a pod (its network namespace and its cgroup, so that
    socket-LB translates its connections); its exit code is ours."""
    if not ctx.args:
        fail(["give the command after --"])
    raise typer.Exit(cluster.exec_in_pod(name, pod, namespace, ctx.args))


@pod_app.command("logs")
def pod_logs(
    pod: Annotated[str, typer.Argument()],
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    name: NameOption = "lab",
) -> None:
    """The output of the pod's command."""
    cluster.pod_info(name, pod, namespace)
    path = cluster.pod_log(name, namespace, pod)
    typer.echo(path.read_text() if path.exists() else "", nl=False)


@pod_app.command("list")
def pod_list(name: NameOption = "lab") -> None:
    """The lab's pods with their node, IP and namespace."""
    state = cluster.load_state(name)
    if state is None:
        fail([f"no lab named {name!r}"])
    assert state is not None
    rows = [[k, v["node"], v["ip"], v["netns"]] for k, v in sorted(state.pods.items())]
    print_table(["POD", "NODE", "IP", "NETNS"], rows)


def register(app: typer.Typer) -> None:
    """Add the ``lab`` group to the root app."""
    app.add_typer(lab_app, name="lab")
