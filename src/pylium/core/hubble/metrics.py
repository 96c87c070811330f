"""L2: Hubble's flow metrics (``hubble-metrics``, served on ``hubble-metrics-server`` :9965):
which handlers are enabled, with their options, and for each flow the label values it counts
under. Names follow ``pkg/hubble/metrics``: the ``flow`` handler counts
``hubble_flows_processed_total`` {protocol, type, subtype, verdict}, ``drop`` counts
``hubble_drop_total`` {reason, protocol}, ``policy`` counts ``hubble_policy_verdicts_total``
{direction, match, action} plus, as a pylium extension users ask upstream for (CFP #34304),
{protocol, port}: the destination port that was allowed or denied; ``tcp`` counts
``hubble_tcp_flags_total`` {flag: SYN, SYN-ACK, FIN, RST; family} of forwarded TCP flows and
``port-distribution`` ``hubble_port_distribution_total`` {protocol, port} of forwarded
requests.

Options (``drop:sourceContext=namespace;destinationContext=pod``) add ``source`` and
``destination`` labels (the first non-empty of ``|``-separated choices: ``namespace``,
``pod``, ``pod-name``, ``app``, ``identity``, ``reserved-identity``, ``ip``), or with
``labelsContext=source_namespace,destination_pod,...`` the named labels, in front of the
handler's own. Unknown handlers are reported, not fatal.

Pure: the agent's collector turns the rows into Prometheus counters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pylium.core.hubble.flow import (
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    TRACE_POINT_TEXT,
    Endpoint,
    Flow,
    TrafficDirection,
    Verdict,
)

NAMESPACE = "hubble"

MATCH_TYPES = {
    0: "none",
    1: "l3-only",
    2: "l3-l4",
    3: "l4-only",
    4: "all",
    5: "l3-proto",
    6: "proto-only",
}
"""``monitorAPI.PolicyMatchType``'s lower-case names, as the policy handler labels them."""

L4_NAMES = {6: "TCP", 17: "UDP", 1: "ICMPv4", 58: "ICMPv6", 132: "SCTP"}

CONTEXTS = ("namespace", "pod", "pod-name", "app", "identity", "reserved-identity", "ip", "dns")
LABELS_CONTEXT = (
    "source_ip",
    "source_namespace",
    "source_pod",
    "source_app",
    "destination_ip",
    "destination_namespace",
    "destination_pod",
    "destination_app",
    "traffic_direction",
)


def flow_protocol(flow: Flow) -> str:
    """``v1.FlowProtocol``: the L4 protocol of an L3/L4 event."""
    if flow.event_type in (EVENT_DROP, EVENT_TRACE, EVENT_POLICY_VERDICT):
        return L4_NAMES.get(flow.proto, "Unknown L4")
    return "Unknown flow"


def _label_value(ep: Endpoint) -> Callable[[str], str]:
    def app() -> str:
        for label in ep.labels:
            key, _, value = label.partition("=")
            if key.split(":", 1)[-1] in ("app", "app.kubernetes.io/name", "k8s-app"):
                return value
        return ""

    def reserved() -> str:
        return next((lb for lb in ep.labels if lb.startswith("reserved:")), "")

    def value(kind: str) -> str:
        if kind == "namespace":
            return ep.namespace
        if kind == "pod":
            return f"{ep.namespace}/{ep.pod_name}" if ep.pod_name else ""
        if kind == "pod-name":
            return ep.pod_name
        if kind == "app":
            return app()
        if kind == "identity":
            return ",".join(ep.labels) if ep.labels else str(ep.identity or "")
        if kind == "reserved-identity":
            return reserved()
        return ""

    return value


@dataclass(frozen=True, slots=True)
class ContextOptions:
    """``sourceContext`` / ``destinationContext`` (choices tried in order), or
    ``labelsContext`` (named labels)."""

    source: tuple[str, ...] = ()
    destination: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        if self.labels:
            return self.labels
        return (("source",) if self.source else ()) + (("destination",) if self.destination else ())

    def values(self, flow: Flow) -> tuple[str, ...]:
        def side(ep: Endpoint, ip: str, choices: tuple[str, ...]) -> str:
            lookup = _label_value(ep)
            for choice in choices:
                got = ip if choice == "ip" else lookup(choice)
                if got:
                    return got
            return ""

        if self.labels:
            out = []
            for name in self.labels:
                if name == "traffic_direction":
                    out.append(flow.traffic_direction.name.lower())
                    continue
                prefix, _, kind = name.partition("_")
                src = prefix == "source"
                ep = flow.source if src else flow.destination
                ip = flow.source_ip if src else flow.destination_ip
                out.append(side(ep, ip, (kind,)))
            return tuple(out)
        out = []
        if self.source:
            out.append(side(flow.source, flow.source_ip, self.source))
        if self.destination:
            out.append(side(flow.destination, flow.destination_ip, self.destination))
        return tuple(out)


Rows = Callable[[Flow], Sequence[tuple[str, ...]]]


def _flow_rows(flow: Flow) -> Sequence[tuple[str, ...]]:
    subtype = ""
    if flow.event_type == EVENT_DROP:
        kind = "Drop"
    elif flow.event_type == EVENT_TRACE:
        kind = "Trace"
        subtype = TRACE_POINT_TEXT.get(flow.trace_observation_point, "")
    elif flow.event_type == EVENT_POLICY_VERDICT:
        kind = "PolicyVerdict"
    else:
        kind, subtype = "Unknown", str(flow.event_type)
    return [(flow_protocol(flow), kind, subtype, flow.verdict.name)]


def _drop_rows(flow: Flow) -> Sequence[tuple[str, ...]]:
    if flow.verdict is not Verdict.DROPPED:
        return []
    return [(flow.drop_reason_desc or "DROP_REASON_UNKNOWN", flow_protocol(flow))]


def _delivered(flow: Flow) -> bool:
    return flow.verdict in (Verdict.FORWARDED, Verdict.REDIRECTED)


def _tcp_rows(flow: Flow) -> Sequence[tuple[str, ...]]:
    """One row per flag of interest (SYN, SYN-ACK, FIN, RST) of a forwarded TCP flow."""
    if not _delivered(flow) or flow.proto != 6 or not flow.tcp_flags:
        return []
    names = flow.tcp_flag_names()
    rows = []
    if "SYN" in names:
        rows.append(("SYN-ACK" if "ACK" in names else "SYN", "IPv4"))
    rows += [(flag, "IPv4") for flag in ("FIN", "RST") if flag in names]
    return rows


def _port_rows(flow: Flow) -> Sequence[tuple[str, ...]]:
    """Destination ports of forwarded requests (replies left out)."""
    if not _delivered(flow) or flow.is_reply or flow.proto not in (6, 17, 132):
        return []
    if not flow.destination_port:
        return []
    return [(flow_protocol(flow), str(flow.destination_port))]


def _policy_rows(flow: Flow) -> Sequence[tuple[str, ...]]:
    if flow.event_type != EVENT_POLICY_VERDICT:
        return []
    direction = (
        flow.traffic_direction.name.lower()
        if flow.traffic_direction is not TrafficDirection.TRAFFIC_DIRECTION_UNKNOWN
        else "unknown"
    )
    match = MATCH_TYPES.get(flow.policy_match_type, str(flow.policy_match_type))
    port = str(flow.destination_port) if flow.proto in (6, 17, 132) else ""
    return [(direction, match, flow.verdict.name.lower(), flow_protocol(flow), port)]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    """Without the ``hubble_`` namespace and the ``_total`` suffix Prometheus adds."""
    help: str
    labels: tuple[str, ...]
    rows: Rows


HANDLERS: dict[str, MetricSpec] = {
    "flow": MetricSpec(
        "flows_processed",
        "Total number of flows processed",
        ("protocol", "type", "subtype", "verdict"),
        _flow_rows,
    ),
    "drop": MetricSpec("drop", "Number of drops", ("reason", "protocol"), _drop_rows),
    "policy": MetricSpec(
        "policy_verdicts",
        "Number of policy verdicts",
        ("direction", "match", "action", "protocol", "port"),
        _policy_rows,
    ),
    "tcp": MetricSpec("tcp_flags", "TCP flag occurrences", ("flag", "family"), _tcp_rows),
    "port-distribution": MetricSpec(
        "port_distribution",
        "Numbers of packets distributed by destination port",
        ("protocol", "port"),
        _port_rows,
    ),
}


@dataclass(frozen=True, slots=True)
class Handler:
    """One enabled handler: its metric, context options, and the full label names."""

    name: str
    spec: MetricSpec
    context: ContextOptions = field(default_factory=ContextOptions)

    @property
    def metric(self) -> str:
        return f"{NAMESPACE}_{self.spec.name}"

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.context.names() + self.spec.labels

    def rows(self, flow: Flow) -> list[tuple[str, ...]]:
        own = self.spec.rows(flow)
        if not own:
            return []
        prefix = self.context.values(flow)
        return [prefix + row for row in own]


def _context(options: str) -> ContextOptions:
    source: tuple[str, ...] = ()
    destination: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    for option in filter(None, options.split(";")):
        key, _, value = option.partition("=")
        if key in ("sourceContext", "destinationContext"):
            choices = tuple(filter(None, value.split("|")))
            bad = [c for c in choices if c not in CONTEXTS]
            if bad or not choices:
                raise ValueError(f"{key}={value}: use {'|'.join(CONTEXTS)}")
            if key == "sourceContext":
                source = choices
            else:
                destination = choices
        elif key == "labelsContext":
            labels = tuple(filter(None, value.split(",")))
            bad = [c for c in labels if c not in LABELS_CONTEXT]
            if bad or not labels:
                raise ValueError(f"labelsContext={value}: use {','.join(LABELS_CONTEXT)}")
        # other upstream options (exemplars, ignoreAAAA, ...) do not change these handlers
    return ContextOptions(source, destination, labels)


def parse_handlers(words: Sequence[str]) -> tuple[list[Handler], list[str]]:
    """``hubble-metrics`` (``drop flow:sourceContext=pod policy``) -> the handlers pylium
    implements, and problems (unknown handlers, bad options) to report."""
    handlers: list[Handler] = []
    problems: list[str] = []
    seen: set[str] = set()
    for word in words:
        name, _, options = word.partition(":")
        spec = HANDLERS.get(name)
        if spec is None:
            problems.append(
                f"hubble-metrics: handler {name!r} is not implemented "
                f"(available: {', '.join(HANDLERS)})"
            )
            continue
        if name in seen:
            problems.append(f"hubble-metrics: handler {name!r} given twice; the first counts")
            continue
        try:
            context = _context(options)
        except ValueError as err:
            problems.append(f"hubble-metrics: {name}: {err}")
            continue
        seen.add(name)
        handlers.append(Handler(name, spec, context))
    return handlers, problems
