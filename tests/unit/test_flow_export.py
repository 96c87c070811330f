"""Flows exported to Parquet: one row per flow with flat columns pandas can read."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from pylium.adapters.flowexport import SCHEMA, write_parquet
from pylium.core.hubble.flow import Endpoint, Flow, PolicyRef, TrafficDirection, Verdict


def flow(port: int, verdict: Verdict) -> Flow:
    return Flow(
        time_ns=1_796_000_000_000_000_000 + port,
        node_name="n2",
        verdict=verdict,
        event_type=1 if verdict is Verdict.DROPPED else 4,
        source_ip="10.0.1.2",
        destination_ip="10.0.0.2",
        proto=6,
        source_port=port,
        destination_port=8080,
        tcp_flags=0x02,
        source=Endpoint(257, ("k8s:app=client",), 3, "default", "client"),
        destination=Endpoint(256, ("k8s:app=server",), 1, "default", "server"),
        traffic_direction=TrafficDirection.INGRESS,
        drop_reason=133 if verdict is Verdict.DROPPED else 0,
        denied_by=(PolicyRef("web", "default", "CiliumNetworkPolicy"),)
        if verdict is Verdict.DROPPED
        else (),
    )


def test_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "flows.parquet"
    assert write_parquet([flow(1000, Verdict.FORWARDED), flow(1001, Verdict.DROPPED)], path) == 2
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    # pandas reads the nanosecond times as Timestamps; plain Python reads them as integers.
    assert table.column("time").cast("int64").to_pylist() == [
        1_796_000_000_000_001_000,
        1_796_000_000_000_001_001,
    ]
    rows = table.drop_columns(["time"]).to_pylist()
    assert rows[1]["verdict"] == "DROPPED" and rows[1]["drop_reason_desc"] == "POLICY_DENIED"
    assert rows[1]["policies"] == ["CiliumNetworkPolicy default/web"]
    assert rows[0]["source_pod"] == "client" and rows[0]["tcp_flags"] == "SYN"
    assert rows[0]["protocol"] == "TCP" and rows[0]["destination_labels"] == ["k8s:app=server"]
    assert write_parquet([], path) == 0  # replaced, not appended
