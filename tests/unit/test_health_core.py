"""cilium-health bookkeeping: probe interval, what is due, reachability, the merged cluster
view, JSON round trip and ``cilium-health status`` text."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from pylium.core.health import (
    Connectivity,
    HealthBook,
    HealthReport,
    NodeHealth,
    PathStatus,
    Target,
    cluster_health_line,
    format_health_status,
    go_duration,
    merge_cluster,
    probe_interval,
    unreachable_table,
)

OK_ICMP = Connectivity(latency_ns=52_700)
OK_HTTP = Connectivity(latency_ns=1_078_400)
REFUSED = Connectivity(status="Get http://192.168.250.12:4240/hello: connection refused")
NO_ECHO = Connectivity(status="no ICMP echo reply from 192.168.250.12 within 2s")
N1, N2 = Target("n1", "192.168.250.11"), Target("n2", "192.168.250.12")
T0 = datetime(2026, 12, 1, 21, 0, 0, tzinfo=UTC)


def book_with(n2_icmp: Connectivity, n2_http: Connectivity) -> HealthBook:
    book = HealthBook(local="n1")
    book.record(N1, OK_ICMP, OK_HTTP, 100.0)
    book.record(N2, n2_icmp, n2_http, 100.0)
    book.finish_round([N1, N2], 100.0, full=True)
    return book


def test_probe_interval_is_upstreams_formula() -> None:
    assert probe_interval(2) == pytest.approx(60 * math.log(3))
    assert probe_interval(2, ratio=0.0) == pytest.approx(10 * math.log(3))
    assert probe_interval(0) == probe_interval(1)  # never zero
    assert go_duration(int(probe_interval(2) * 1e9), round_to=1_000_000_000) == "1m6s"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (682_800, "682.8µs"),
        (2_000_000, "2ms"),
        (1_500_000_000, "1.5s"),
        (66_000_000_000, "1m6s"),
        (3_723_000_000_000, "1h2m3s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_reachable_needs_every_probe() -> None:
    assert NodeHealth("n2", PathStatus(N2.ip, OK_ICMP, OK_HTTP)).reachable
    half = NodeHealth("n2", PathStatus(N2.ip, OK_ICMP, REFUSED))
    assert not half.reachable
    assert half.host_counts() == (1, 2)
    assert not NodeHealth("n2", PathStatus(N2.ip)).reachable  # never probed


def test_summary_and_local_first() -> None:
    report = book_with(OK_ICMP, REFUSED).report(timestamp=T0, interval=66.0)
    assert report.summary() == (1, 2)
    assert [n.name for n in report.nodes] == ["n1", "n2"]
    assert report.timestamp == "2026-12-01T21:00:00Z"
    assert [n.name for n in report.unreachable()] == ["n2"]


def test_due_round_new_node_and_retry() -> None:
    book = HealthBook(local="n1")
    assert book.due([N1, N2], 0.0, 60.0) == [N1, N2]  # first round: everyone
    book = book_with(OK_ICMP, OK_HTTP)
    assert book.due([N1, N2], 110.0, 60.0) == []  # mid-interval, all fine
    assert book.due([N1, N2], 160.0, 60.0) == [N1, N2]  # the next round
    n3 = Target("n3", "192.168.250.13")
    assert book.due([N1, N2, n3], 110.0, 60.0) == [n3]  # a new node at once
    moved = Target("n2", "192.168.250.99")
    assert book.due([N1, moved], 110.0, 60.0) == [moved]  # a new address too
    book = book_with(OK_ICMP, REFUSED)
    assert book.due([N1, N2], 105.0, 60.0, retry=10.0) == []
    assert book.due([N1, N2], 110.0, 60.0, retry=10.0) == [N2]  # unreachable: retried


def test_nodes_that_left_are_forgotten() -> None:
    book = book_with(OK_ICMP, OK_HTTP)
    book.finish_round([N1], 200.0, full=False)
    assert set(book.results) == {"n1"}
    assert book.last_round == 100.0  # a partial round keeps the interval


def test_json_round_trip_in_upstream_shape() -> None:
    report = book_with(OK_ICMP, REFUSED).report(timestamp=T0, interval=65.917)
    data = report.to_json()
    assert data["local"] == {"name": "n1"}
    n2 = data["nodes"][1]
    assert n2["name"] == "n2"
    assert n2["host"]["primary-address"] == {
        "ip": N2.ip,
        "icmp": {"status": "", "latency": 52_700},
        "http": {"status": REFUSED.status, "latency": 0},
    }
    assert data["probeInterval"] == "1m5.917s"
    assert HealthReport.from_json(data) == report


def test_health_status_text_distinguishes_icmp_from_http() -> None:
    report = book_with(OK_ICMP, REFUSED).report(timestamp=T0, interval=66.0)
    lines = format_health_status(report)
    assert lines[0] == "Probe time:   2026-12-01T21:00:00Z"
    assert "  n1 (localhost):" in lines
    assert "    Host connectivity to 192.168.250.12:" in lines
    assert "      ICMP to stack:   OK, RTT=52.7µs" in lines
    assert f"      HTTP to agent:   {REFUSED.status}" in lines
    succinct = format_health_status(report, succinct=True)
    assert succinct[0].startswith("Cluster health: 1/2 reachable")
    assert any(ln.startswith("n2 ") and "No (1/2)" in ln for ln in succinct)


def test_cluster_health_line_and_unreachable_table() -> None:
    report = book_with(NO_ECHO, REFUSED).report(timestamp=T0, interval=66.0)
    assert cluster_health_line(report) == (
        "1/2 reachable   (2026-12-01T21:00:00Z)   (Probe interval: 1m6s)"
    )
    table = unreachable_table(report)
    assert table[0].split() == ["Name", "IP", "Node", "Endpoints"]
    assert table[1].split() == ["n2", N2.ip, "0/2", "n/a"]
    assert len(unreachable_table(report, all_nodes=True)) == 3
    fine = book_with(OK_ICMP, OK_HTTP).report(timestamp=T0, interval=66.0)
    assert unreachable_table(fine) == []


def test_merge_cluster_from_live_reports() -> None:
    n1_view = book_with(OK_ICMP, REFUSED).report(timestamp=T0, interval=66.0)
    merged = merge_cluster(["n1", "n2"], {"n1": n1_view})
    assert (merged.reachable, merged.total, merged.reporters) == (1, 2, ("n1",))
    assert merged.unreachable == (("n2", f"seen from n1: ICMP ok, HTTP: {REFUSED.status}"),)
    assert merged.line() == "1/2 reachable   (seen from n1)"
    both_fine = book_with(OK_ICMP, OK_HTTP).report(timestamp=T0, interval=66.0)
    assert merge_cluster(["n1", "n2"], {"n1": both_fine}).reachable == 2
    # a node no agent has probed yet is not counted as reachable
    lone = merge_cluster(["n1", "n2", "n3"], {"n1": both_fine})
    assert lone.reachable == 2
    assert ("n3", "not probed yet by any agent") in lone.unreachable
    assert merge_cluster(["n1"], {}).line() == "no agent has reported yet"
