"""L2: flows as ``hubble observe`` prints them: ``compact`` (one line), ``dict`` (key: value
blocks), ``table`` rows, ``json`` (one GetFlowsResponse-shaped object per line)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from pylium.core.hubble.flow import (
    DROP_REASON_TEXT,
    EVENT_POLICY_VERDICT,
    TRACE_POINT_TEXT,
    Flow,
    Verdict,
)

MATCH_TYPES = {
    0: "none",
    1: "L3-Only",
    2: "L3-L4",
    3: "L4-Only",
    4: "all",
    5: "L3-Proto",
    6: "Proto-Only",
}


def timestamp(time_ns: int) -> str:
    t = datetime.datetime.fromtimestamp(time_ns / 1e9, tz=datetime.UTC)
    return t.strftime("%b %e %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _side(flow: Flow, source: bool) -> str:
    ep = flow.source if source else flow.destination
    ip = flow.source_ip if source else flow.destination_ip
    port = flow.source_port if source else flow.destination_port
    return f"{ep.display(ip, port)} (ID:{ep.identity})"


def _what(flow: Flow) -> str:
    if flow.event_type == EVENT_POLICY_VERDICT:
        match = MATCH_TYPES.get(flow.policy_match_type, str(flow.policy_match_type))
        decision = "ALLOWED" if flow.verdict is Verdict.FORWARDED else flow.verdict.name
        if flow.verdict is Verdict.DROPPED:
            decision = "DENIED"
        return f"policy-verdict:{match} {flow.traffic_direction.name} {decision}"
    if flow.verdict is Verdict.DROPPED:
        text = DROP_REASON_TEXT.get(flow.drop_reason, flow.drop_reason_desc)
        return f"{text} DROPPED"
    point = TRACE_POINT_TEXT.get(flow.trace_observation_point, "")
    return f"{point} {flow.verdict.name}".strip()


def policy_names(flow: Flow) -> str:
    if flow.denied_by:
        return " by " + ", ".join(str(p) for p in flow.denied_by)
    if flow.allowed_by:
        return " by " + ", ".join(str(p) for p in flow.allowed_by)
    return ""


def compact(flow: Flow, *, print_policy_names: bool = False) -> str:
    arrow = "<-" if flow.is_reply else "->"
    left, right = (
        (_side(flow, False), _side(flow, True))
        if flow.is_reply
        else (
            _side(flow, True),
            _side(flow, False),
        )
    )
    line = f"{timestamp(flow.time_ns)}: {left} {arrow} {right} {_what(flow)} ({flow.summary()})"
    if print_policy_names:
        line += policy_names(flow)
    return line


def as_json(flow: Flow) -> str:
    return json.dumps({"flow": flow.to_json(), "node_name": flow.node_name, "time": flow.time_ns})


def as_dict(flow: Flow) -> str:
    rows: list[tuple[str, Any]] = [
        ("TIMESTAMP", timestamp(flow.time_ns)),
        ("SOURCE", _side(flow, True)),
        ("DESTINATION", _side(flow, False)),
        ("TYPE", _what(flow).rsplit(" ", 1)[0] or flow.event_type_name),
        ("VERDICT", flow.verdict.name),
        ("SUMMARY", flow.summary()),
    ]
    if flow.allowed_by or flow.denied_by:
        rows.append(("POLICY", policy_names(flow).removeprefix(" by ")))
    return "\n".join(f"{k:>12}: {v}" for k, v in rows)


TABLE_HEADERS = ("TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY")


def table_row(flow: Flow) -> tuple[str, ...]:
    return (
        timestamp(flow.time_ns),
        _side(flow, True),
        _side(flow, False),
        _what(flow).rsplit(" ", 1)[0] or flow.event_type_name,
        flow.verdict.name,
        flow.summary(),
    )
