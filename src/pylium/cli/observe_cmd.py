"""L7: ``pylium observe``: Hubble's ``hubble observe`` over the agents' flow rings, cluster-wide
(every node of the current lab, merged by time, as the relay does) or one node (``--node``).

Filters follow ``hubble observe``: ``--from-*``/``--to-*`` constrain one side, the bare forms
(``--pod``, ``--namespace``, ``--label``, ``--ip``, ``--port``) either side; values of one flag
are alternatives; different flags must all hold. Output ``compact`` (default), ``json``
(``jsonpb``: one GetFlowsResponse object per line), ``dict``, ``table``; ``--export FILE``
writes JSON lines as well.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pylium.adapters import flowexport
from pylium.adapters.agentapi import AgentClient
from pylium.adapters.hubbleapi.client import ObserverClient
from pylium.base.errors import PyliumError
from pylium.cli.common import fail, print_table
from pylium.core.hubble import render
from pylium.core.hubble.filters import EVENT_TYPES, FlowFilter, filter_to_json
from pylium.core.hubble.flow import Flow, Verdict, flow_from_json
from pylium.lab import cluster

Multi = list[str] | None


def _duration(text: str) -> int:
    """``5m``, ``30s``, ``1h``, ``2h30m`` ago, or an RFC 3339 time: nanoseconds since epoch."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if parts and any(parts.groups()):
        h, m, s = (int(x or 0) for x in parts.groups())
        return time.time_ns() - (h * 3600 + m * 60 + s) * 1_000_000_000
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail([f"{text!r}: give a duration (5m, 30s, 1h) or an RFC 3339 time"])
        raise
    return int(when.timestamp() * 1e9)


def build_filters(
    *,
    namespace: list[str],
    pod: list[str],
    from_pod: list[str],
    to_pod: list[str],
    label: list[str],
    from_label: list[str],
    to_label: list[str],
    ip: list[str],
    from_ip: list[str],
    to_ip: list[str],
    port: list[int],
    from_port: list[int],
    to_port: list[int],
    verdict: list[str],
    protocol: list[str],
    types: list[str],
) -> list[FlowFilter]:
    """The allow-list filters for ``hubble observe``'s flags (an empty list: everything)."""
    try:
        verdicts = tuple(Verdict[v.upper()] for v in verdict)
    except KeyError as err:
        fail([f"--verdict {err.args[0]}: use {', '.join(v.name for v in Verdict)}"])
        raise
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        fail([f"--type {unknown[0]}: use {', '.join(EVENT_TYPES)}"])
    base = FlowFilter(
        verdict=verdicts,
        protocol=tuple(protocol),
        event_type=tuple(EVENT_TYPES[t] for t in types),
        source_pod=tuple(from_pod),
        destination_pod=tuple(to_pod),
        source_label=tuple(from_label),
        destination_label=tuple(to_label),
        source_ip=tuple(from_ip),
        destination_ip=tuple(to_ip),
        source_port=tuple(from_port),
        destination_port=tuple(to_port),
    )
    pods = tuple(pod) + tuple(f"{ns}/" for ns in namespace)
    either = bool(pods or label or ip or port)
    if not either:
        return [base] if base != FlowFilter() else []

    def side(prefix: str) -> FlowFilter:
        def add(field: str, values: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
            return {field: getattr(base, field) + values} if values else {}

        return dataclasses.replace(
            base,
            **add(f"{prefix}_pod", pods),
            **add(f"{prefix}_label", tuple(label)),
            **add(f"{prefix}_ip", tuple(ip)),
            **add(f"{prefix}_port", tuple(port)),
        )

    return [side("source"), side("destination")]


def _nodes(node: str | None, lab: str | None) -> dict[str, Path]:
    name = lab or cluster.current_lab()
    if name is None:
        fail(["no current lab: run `pylium lab up` or pass --lab"])
    assert name is not None
    state = cluster.load_state(name)
    if state is None:
        fail([f"no lab named {name!r}"])
    assert state is not None
    chosen = [node] if node else sorted(state.nodes)
    return {n: cluster.agent_socket(n, name) for n in chosen}


class FlowSink:
    """``--export`` (JSON lines, appended as flows come) and ``--export-parquet`` (written
    when observing ends)."""

    def __init__(self, jsonl: Path | None, parquet: Path | None) -> None:
        self._jsonl = open(jsonl, "a") if jsonl is not None else None  # noqa: SIM115
        self._parquet = parquet
        self._flows: list[Flow] = []

    def add(self, flow: Flow) -> None:
        if self._jsonl is not None:
            self._jsonl.write(render.as_json(flow) + "\n")
        if self._parquet is not None:
            self._flows.append(flow)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._parquet is not None:
            rows = flowexport.write_parquet(self._flows, self._parquet)
            print(f"{rows} flows written to {self._parquet}", file=sys.stderr)


def _print(flows: list[Flow], output: str, policy_names: bool, export: Any) -> None:
    for flow in flows:
        if export is not None:
            export.add(flow)
        if output in ("json", "jsonpb"):
            typer.echo(render.as_json(flow))
        elif output == "dict":
            typer.echo(render.as_dict(flow) + "\n------------")
        elif output == "compact":
            typer.echo(render.compact(flow, print_policy_names=policy_names))
    if output == "table" and flows:
        print_table(render.TABLE_HEADERS, [render.table_row(f) for f in flows])


def observe(
    namespace: Annotated[Multi, typer.Option("-n", "--namespace", help="Either side.")] = None,
    pod: Annotated[
        Multi, typer.Option("--pod", help="[namespace/]pod-name-prefix, either side.")
    ] = None,
    from_pod: Annotated[Multi, typer.Option("--from-pod")] = None,
    to_pod: Annotated[Multi, typer.Option("--to-pod")] = None,
    label: Annotated[
        Multi, typer.Option("-l", "--label", help="key=value[,key=value], either side.")
    ] = None,
    from_label: Annotated[Multi, typer.Option("--from-label")] = None,
    to_label: Annotated[Multi, typer.Option("--to-label")] = None,
    ip: Annotated[Multi, typer.Option("--ip")] = None,
    from_ip: Annotated[Multi, typer.Option("--from-ip")] = None,
    to_ip: Annotated[Multi, typer.Option("--to-ip")] = None,
    port: Annotated[list[int] | None, typer.Option("--port")] = None,
    from_port: Annotated[list[int] | None, typer.Option("--from-port")] = None,
    to_port: Annotated[list[int] | None, typer.Option("--to-port")] = None,
    verdict: Annotated[
        Multi, typer.Option("--verdict", help="FORWARDED, DROPPED, AUDIT...")
    ] = None,
    protocol: Annotated[Multi, typer.Option("--protocol", help="tcp, udp, icmp, sctp")] = None,
    types: Annotated[
        Multi, typer.Option("-t", "--type", help="drop, trace, policy-verdict")
    ] = None,
    last: Annotated[int, typer.Option("--last", help="The last N flows (default 20).")] = 0,
    first: Annotated[int, typer.Option("--first", help="The first N flows.")] = 0,
    all_: Annotated[bool, typer.Option("--all", help="Every flow in the rings.")] = False,
    since: Annotated[str | None, typer.Option("--since", help="5m, 1h, or RFC 3339.")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
    output: Annotated[
        str, typer.Option("-o", "--output", help="compact|json|jsonpb|dict|table")
    ] = "compact",
    print_policy_names: Annotated[bool, typer.Option("--print-policy-names")] = False,
    node: Annotated[
        str | None, typer.Option("--node", help="One node's agent (default: all).")
    ] = None,
    lab: Annotated[str | None, typer.Option("--lab")] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Also write JSON lines here.")
    ] = None,
    export_parquet: Annotated[
        Path | None,
        typer.Option("--export-parquet", help="Also write the flows as Parquet (for pandas)."),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="A Hubble server (gRPC): host:port, unix:PATH, or 'relay' for the lab's relay.",
        ),
    ] = None,
    duration: Annotated[
        float, typer.Option("--duration", help="Stop following after N seconds.", hidden=True)
    ] = 0.0,
) -> None:
    """Observe flows: Hubble's ``observe`` on the lab's agents."""
    if output not in ("compact", "json", "jsonpb", "dict", "table"):
        fail([f"-o {output}: use compact, json, jsonpb, dict or table"])
    filters = build_filters(
        namespace=namespace or [],
        pod=pod or [],
        from_pod=from_pod or [],
        to_pod=to_pod or [],
        label=label or [],
        from_label=from_label or [],
        to_label=to_label or [],
        ip=ip or [],
        from_ip=from_ip or [],
        to_ip=to_ip or [],
        port=port or [],
        from_port=from_port or [],
        to_port=to_port or [],
        verdict=verdict or [],
        protocol=protocol or [],
        types=types or [],
    )
    query: dict[str, str] = {"allow": json.dumps([filter_to_json(f) for f in filters])}
    if since:
        query["since"] = str(_duration(since))
    if until:
        query["until"] = str(_duration(until))
    number = first or last or (0 if (all_ or since or follow) else 20)
    if first:
        query["first"] = "1"
    sink = FlowSink(export, export_parquet) if export or export_parquet else None
    if server is not None:
        try:
            _observe_grpc(
                server,
                lab,
                filters,
                (number, bool(first), follow, duration),
                query,
                (output, print_policy_names, sink),
            )
        finally:
            if sink is not None:
                sink.close()
        return
    sockets = _nodes(node, lab)
    try:
        flows: list[Flow] = []
        seqs: dict[str, int] = {}
        for name, sock in sockets.items():
            answer = AgentClient(sock, timeout=30).get("/v1/flows", **query, number=str(number))
            flows += [flow_from_json(f) for f in answer["flows"]]
            seqs[name] = int(answer["seq"])
        flows.sort(key=lambda f: f.time_ns)
        if number:
            flows = flows[:number] if first else flows[-number:]
        _print(flows, output, print_policy_names, sink)
        if follow:
            _follow(sockets, seqs, query, output, print_policy_names, sink, duration)
    finally:
        if sink is not None:
            sink.close()


def _observe_grpc(
    server: str,
    lab: str | None,
    filters: list[FlowFilter],
    what: tuple[int, bool, bool, float],
    query: dict[str, str],
    how: tuple[str, bool, Any],
) -> None:
    """Through Hubble's gRPC API: one node's server or the relay (cluster-wide)."""
    number, first, follow, duration = what
    output, policy_names, sink = how
    if server == "relay":
        name = lab or cluster.current_lab()
        if name is None:
            fail(["no current lab for --server relay: pass --lab or a host:port"])
        assert name is not None
        server = f"unix:{cluster.relay_socket(name)}"
    with ObserverClient(server) as client:
        stream = client.flows(
            number=number,
            first=first,
            follow=follow,
            allow=filters,
            since_ns=int(query.get("since", "0")),
            until_ns=int(query.get("until", "0")),
            deadline=duration or None,
            on_lost=lambda n: print(
                f"EVENTS LOST: {n} (the datapath's ring buffer)", file=sys.stderr
            ),
        )
        batch: list[Flow] = []
        for flow in stream:
            if not follow:
                batch.append(flow)
                continue
            _print([flow], output, policy_names, sink)
            sys.stdout.flush()
        _print(batch, output, policy_names, sink)


def _follow(
    sockets: dict[str, Path],
    seqs: dict[str, int],
    query: dict[str, str],
    output: str,
    policy_names: bool,
    sink: Any,
    duration: float,
) -> None:
    """Long-poll every node in its own thread; print flows as they arrive (the relay's merge
    by arrival)."""
    lock = threading.Lock()
    stop = threading.Event()

    def poll(name: str, sock: Path) -> None:
        client = AgentClient(sock, timeout=40)
        seq = seqs[name]
        while not stop.is_set():
            try:
                answer = client.get("/v1/flows", **query, after=str(seq), wait="1")
            except PyliumError as err:
                with lock:
                    print(f"node {name}: {err}", file=sys.stderr)
                stop.wait(1.0)
                continue
            seq = int(answer["seq"])
            flows = [flow_from_json(f) for f in answer["flows"]]
            if flows:
                with lock:
                    _print(flows, output, policy_names, sink)
                    sys.stdout.flush()

    threads = [threading.Thread(target=poll, args=item, daemon=True) for item in sockets.items()]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=3)


def register(app: typer.Typer) -> None:
    app.command("observe")(observe)
