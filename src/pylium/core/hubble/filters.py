"""L2: Hubble's flow filters (``FlowFilter`` of ``observer.proto``, the fields ``hubble observe``
sets): a flow passes when it matches at least one allow-list filter (or there is none) and no
deny-list filter; within a filter every set field must match, and a field's values are
alternatives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pylium.core.hubble.flow import PROTO_NAMES, Flow, TrafficDirection, Verdict
from pylium.core.identity.labels import Label

EVENT_TYPES = {"drop": 1, "trace": 4, "policy-verdict": 5}


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowFilter:
    source_ip: tuple[str, ...] = ()
    destination_ip: tuple[str, ...] = ()
    source_pod: tuple[str, ...] = ()
    """``namespace/name-prefix`` or ``namespace/`` (Hubble's pod filter)."""
    destination_pod: tuple[str, ...] = ()
    source_label: tuple[str, ...] = ()
    """``key=value`` or ``source:key=value``: all of a value's labels must be present."""
    destination_label: tuple[str, ...] = ()
    source_identity: tuple[int, ...] = ()
    destination_identity: tuple[int, ...] = ()
    source_port: tuple[int, ...] = ()
    destination_port: tuple[int, ...] = ()
    verdict: tuple[Verdict, ...] = ()
    event_type: tuple[int, ...] = ()
    protocol: tuple[str, ...] = ()
    """``tcp``, ``udp``, ``icmp`` (``icmpv4``), ``sctp``."""
    traffic_direction: tuple[TrafficDirection, ...] = ()
    reply: tuple[bool, ...] = ()
    node_name: tuple[str, ...] = ()

    def matches(self, flow: Flow) -> bool:
        src, dst = flow.source, flow.destination
        return (
            _any(self.source_ip, flow.source_ip in self.source_ip)
            and _any(self.destination_ip, flow.destination_ip in self.destination_ip)
            and _any(self.source_pod, _pod(src.namespace, src.pod_name, self.source_pod))
            and _any(self.destination_pod, _pod(dst.namespace, dst.pod_name, self.destination_pod))
            and _any(self.source_label, _labels(src.labels, self.source_label))
            and _any(self.destination_label, _labels(dst.labels, self.destination_label))
            and _any(self.source_identity, src.identity in self.source_identity)
            and _any(self.destination_identity, dst.identity in self.destination_identity)
            and _any(self.source_port, flow.source_port in self.source_port)
            and _any(self.destination_port, flow.destination_port in self.destination_port)
            and _any(self.verdict, flow.verdict in self.verdict)
            and _any(self.event_type, flow.event_type in self.event_type)
            and _any(self.protocol, _protocol(flow.proto) in {p.lower() for p in self.protocol})
            and _any(self.traffic_direction, flow.traffic_direction in self.traffic_direction)
            and _any(self.reply, bool(flow.is_reply) in self.reply)
            and _any(self.node_name, flow.node_name in self.node_name)
        )


def _any(values: Sequence[object], matched: bool) -> bool:
    """An unset field matches everything."""
    return not values or matched


def _protocol(proto: int) -> str:
    name = PROTO_NAMES.get(proto, str(proto)).lower()
    return "icmp" if name == "icmpv4" else name


def _pod(namespace: str, pod: str, wanted: Sequence[str]) -> bool:
    if not pod:
        return False
    for text in wanted:
        ns, _, prefix = text.rpartition("/")
        if (not ns or ns == namespace) and pod.startswith(prefix):
            return True
    return False


def _labels(labels: Sequence[str], wanted: Sequence[str]) -> bool:
    """Each wanted value is a comma-separated set of labels that must all be present; a label
    without a source matches any source."""
    have = [Label.parse(text) for text in labels]
    for text in wanted:
        required = [Label.parse(part.strip()) for part in text.split(",") if part.strip()]
        if all(
            any(
                h.key == r.key and h.value == r.value and (r.source in ("any", "unspec", h.source))
                for h in have
            )
            for r in required
        ):
            return True
    return False


def passes(flow: Flow, allow: Sequence[FlowFilter], deny: Sequence[FlowFilter] = ()) -> bool:
    if allow and not any(f.matches(flow) for f in allow):
        return False
    return not any(f.matches(flow) for f in deny)


def filter_from_json(d: dict[str, object]) -> FlowFilter:
    """A filter as the agent's API and the CLI exchange it (Hubble's field names; verdicts and
    directions by name); unknown fields are an error naming them."""
    known = set(FlowFilter.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown flow filter field(s): {', '.join(unknown)}")
    args: dict[str, tuple[object, ...]] = {}
    for key, raw in d.items():
        values = tuple(raw) if isinstance(raw, list | tuple) else (raw,)
        if key == "verdict":
            values = tuple(Verdict[str(v)] for v in values)
        elif key == "traffic_direction":
            values = tuple(TrafficDirection[str(v)] for v in values)
        elif key in (
            "source_port",
            "destination_port",
            "source_identity",
            "destination_identity",
            "event_type",
        ):
            values = tuple(int(str(v)) for v in values)
        elif key == "reply":
            values = tuple(bool(v) for v in values)
        else:
            values = tuple(str(v) for v in values)
        args[key] = values
    return FlowFilter(**args)  # type: ignore[arg-type]


def filter_to_json(f: FlowFilter) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for key in FlowFilter.__dataclass_fields__:
        values = getattr(f, key)
        if values:
            out[key] = [v.name if isinstance(v, Verdict | TrafficDirection) else v for v in values]
    return out
