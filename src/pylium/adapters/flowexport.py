"""L3: flows written for analysis: JSON lines (one Hubble ``GetFlowsResponse`` per line, as
``hubble observe -o jsonpb``) and Parquet (one row per flow, flat columns, for pandas:
``pandas.read_parquet(path)``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pylium.core.hubble.flow import PROTO_NAMES, Flow

COLUMNS: tuple[tuple[str, Any], ...] = (
    ("time", pa.timestamp("ns", tz="UTC")),
    ("node_name", pa.string()),
    ("verdict", pa.string()),
    ("drop_reason", pa.int32()),
    ("drop_reason_desc", pa.string()),
    ("event_type", pa.string()),
    ("traffic_direction", pa.string()),
    ("is_reply", pa.bool_()),
    ("source_ip", pa.string()),
    ("destination_ip", pa.string()),
    ("protocol", pa.string()),
    ("source_port", pa.int32()),
    ("destination_port", pa.int32()),
    ("tcp_flags", pa.string()),
    ("source_identity", pa.int64()),
    ("source_namespace", pa.string()),
    ("source_pod", pa.string()),
    ("source_labels", pa.list_(pa.string())),
    ("destination_identity", pa.int64()),
    ("destination_namespace", pa.string()),
    ("destination_pod", pa.string()),
    ("destination_labels", pa.list_(pa.string())),
    ("policies", pa.list_(pa.string())),
    ("summary", pa.string()),
)
SCHEMA = pa.schema(list(COLUMNS))


def _row(f: Flow) -> dict[str, Any]:
    return {
        "time": f.time_ns,
        "node_name": f.node_name,
        "verdict": f.verdict.name,
        "drop_reason": f.drop_reason,
        "drop_reason_desc": f.drop_reason_desc,
        "event_type": f.event_type_name,
        "traffic_direction": f.traffic_direction.name,
        "is_reply": f.is_reply,
        "source_ip": f.source_ip,
        "destination_ip": f.destination_ip,
        "protocol": PROTO_NAMES.get(f.proto, str(f.proto)),
        "source_port": f.source_port,
        "destination_port": f.destination_port,
        "tcp_flags": ",".join(f.tcp_flag_names()),
        "source_identity": f.source.identity,
        "source_namespace": f.source.namespace,
        "source_pod": f.source.pod_name,
        "source_labels": list(f.source.labels),
        "destination_identity": f.destination.identity,
        "destination_namespace": f.destination.namespace,
        "destination_pod": f.destination.pod_name,
        "destination_labels": list(f.destination.labels),
        "policies": [str(p) for p in (*f.allowed_by, *f.denied_by)],
        "summary": f.summary(),
    }


def write_parquet(flows: Sequence[Flow], path: Path) -> int:
    """Write (replace) ``path``; returns the number of rows."""
    table = pa.Table.from_pylist([_row(f) for f in flows], schema=SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return int(table.num_rows)
