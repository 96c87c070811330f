"""Metrics with upstream's names: the datapath families from a fake metrics map, the agent's
gauges, Hubble's handlers (flow, drop, policy with the port) and their context options, the
serve addresses, and the Helm values that switch them on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pylium.agent.metrics import AgentCollector, HubbleMetrics, LostEventsCollector, start
from pylium.base.errors import ConfigError
from pylium.core.hubble.flow import (
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    Endpoint,
    Flow,
    TraceObservationPoint,
    TrafficDirection,
    Verdict,
)
from pylium.core.hubble.metrics import parse_handlers
from pylium.core.metrics import (
    datapath_rows,
    drop_reason_text,
    identity_type,
    ipam_ips,
    map_pressure,
)
from pylium.core.settings import chart
from pylium.model.config import AgentSettings
from pylium.runtime.metrics import parse_address, samples
from pylium.runtime.unixhttp import HttpError, Request


@dataclass(frozen=True)
class C:
    count: int
    bytes: int


FAKE_MAP = {
    (0, 1): C(10, 1000),
    (0, 2): C(7, 700),
    (133, 1): C(3, 180),
    (181, 2): C(1, 60),
    (134, 1): C(1, 40),
    (2, 1): C(1, 40),  # the same words as 134: added up
    (250, 3): C(2, 20),  # no words upstream: the number
}


class FakeSources:
    def datapath_totals(self) -> Mapping[tuple[int, int], C]:
        return FAKE_MAP

    def endpoints(self) -> int:
        return 3

    def identities(self) -> Sequence[int]:
        return [1, 2, 4, 256, 300, (1 << 24) + 1]

    def policies(self) -> int:
        return 2

    def ip_addresses(self) -> Mapping[str, int]:
        return {"ipv4": 4}

    def map_usage(self) -> Mapping[str, tuple[int, int]]:
        return {"pylium_ipcache": (128, 512000), "pylium_lxc": (4, 65535)}


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    """``name{labels}`` -> value, from the text exposition."""
    out: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_datapath_rows_name_reasons_and_directions() -> None:
    rows = datapath_rows(FAKE_MAP)
    assert rows.forwards == {"INGRESS": (10, 1000), "EGRESS": (7, 700)}
    assert rows.drops[("Policy denied", "INGRESS")] == (3, 180)
    assert rows.drops[("Policy denied by denylist", "EGRESS")] == (1, 60)
    assert rows.drops[("Invalid packet", "INGRESS")] == (2, 80)
    assert rows.drops[("250", "SERVICE")] == (2, 20)
    assert drop_reason_text(158) == "Service backend not found"
    assert datapath_rows({}).drops == {} and datapath_rows({}).forwards == {}


def test_agent_collector_families() -> None:
    registry = CollectorRegistry()
    registry.register(AgentCollector(FakeSources()))
    got = scrape(registry)
    assert got['cilium_drop_count_total{direction="INGRESS",reason="Policy denied"}'] == 3
    assert got['cilium_drop_bytes_total{direction="INGRESS",reason="Policy denied"}'] == 180
    assert got['cilium_forward_count_total{direction="EGRESS"}'] == 7
    assert got['cilium_forward_bytes_total{direction="INGRESS"}'] == 1000
    assert got["cilium_endpoint"] == 3
    assert got['cilium_identity{type="reserved"}'] == 3
    assert got['cilium_identity{type="cluster_local"}'] == 2
    assert got['cilium_identity{type="node_local"}'] == 1
    assert got["cilium_policy"] == 2
    assert got['cilium_ip_addresses{family="ipv4"}'] == 4
    assert got['cilium_bpf_map_pressure{map_name="pylium_ipcache"}'] == pytest.approx(128 / 512000)


def test_collector_survives_a_failing_source() -> None:
    class Broken(FakeSources):
        def datapath_totals(self) -> Mapping[tuple[int, int], C]:
            raise OSError("map gone")

    registry = CollectorRegistry()
    registry.register(AgentCollector(Broken()))
    got = scrape(registry)
    assert "cilium_endpoint" in got
    assert not any(k.startswith("cilium_drop_count") for k in got)


def test_pressure_and_identity_types() -> None:
    assert map_pressure(0, 100) == 0.0
    assert map_pressure(50, 100) == 0.5
    assert map_pressure(200, 100) == 1.0
    assert map_pressure(1, 0) == 0.0
    assert [identity_type(i) for i in (2, 255, 256, 65535, 1 << 24)] == [
        "reserved",
        "reserved",
        "cluster_local",
        "cluster_local",
        "node_local",
    ]


def flow(
    *,
    event: int,
    verdict: Verdict = Verdict.FORWARDED,
    reason: int = 0,
    match: int = 0,
    proto: int = 6,
    dport: int = 8080,
    direction: TrafficDirection = TrafficDirection.INGRESS,
) -> Flow:
    return Flow(
        time_ns=1,
        node_name="n1",
        verdict=verdict,
        event_type=event,
        source_ip="10.0.1.5",
        destination_ip="10.0.2.7",
        proto=proto,
        source_port=40000,
        destination_port=dport,
        tcp_flags=2,
        source=Endpoint(
            identity=300, labels=("k8s:app=client",), namespace="default", pod_name="client"
        ),
        destination=Endpoint(
            identity=301, labels=("k8s:app=server",), namespace="prod", pod_name="server"
        ),
        traffic_direction=direction,
        drop_reason=reason,
        trace_observation_point=TraceObservationPoint.TO_ENDPOINT
        if event == EVENT_TRACE
        else TraceObservationPoint.UNKNOWN_POINT,
        policy_match_type=match,
    )


def test_hubble_handlers_count_upstreams_labels() -> None:
    handlers, problems = parse_handlers(["drop", "flow", "policy", "dns:query;ignoreAAAA"])
    assert [h.name for h in handlers] == ["drop", "flow", "policy"]
    assert problems and "dns" in problems[0]
    registry = CollectorRegistry()
    metrics = HubbleMetrics(handlers, registry)
    metrics.observe(
        [
            flow(event=EVENT_TRACE),
            flow(event=EVENT_DROP, verdict=Verdict.DROPPED, reason=133),
            flow(event=EVENT_POLICY_VERDICT, verdict=Verdict.DROPPED, reason=133, match=0),
            flow(event=EVENT_POLICY_VERDICT, match=2, dport=80, direction=TrafficDirection.EGRESS),
            flow(event=EVENT_POLICY_VERDICT, match=2, dport=80, direction=TrafficDirection.EGRESS),
        ]
    )
    got = scrape(registry)
    key = (
        'hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",'
        'verdict="FORWARDED"}'
    )
    assert got[key] == 1
    assert (
        got['hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"}']
        == 1
    )
    assert got['hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"}'] == 2
    allowed = (
        'hubble_policy_verdicts_total{action="forwarded",direction="egress",match="l3-l4",'
        'port="80",protocol="TCP"}'
    )
    assert got[allowed] == 2
    denied = (
        'hubble_policy_verdicts_total{action="dropped",direction="ingress",match="none",'
        'port="8080",protocol="TCP"}'
    )
    assert got[denied] == 1


def test_hubble_context_options() -> None:
    handlers, problems = parse_handlers(
        [
            "drop:sourceContext=pod|identity;destinationContext=namespace",
            "policy:labelsContext=source_app,destination_pod,traffic_direction",
        ]
    )
    assert not problems
    drop, policy = handlers
    assert drop.label_names == ("source", "destination", "reason", "protocol")
    assert drop.rows(flow(event=EVENT_DROP, verdict=Verdict.DROPPED, reason=181)) == [
        ("default/client", "prod", "POLICY_DENY", "TCP")
    ]
    assert policy.label_names[:3] == ("source_app", "destination_pod", "traffic_direction")
    row = policy.rows(flow(event=EVENT_POLICY_VERDICT, match=3, proto=17, dport=53))
    assert row == [
        ("client", "prod/server", "ingress", "ingress", "l4-only", "forwarded", "UDP", "53")
    ]
    _, bad = parse_handlers(["flow:sourceContext=galaxy", "flow", "flow"])
    assert len(bad) == 2 and "galaxy" in bad[0]


def test_serve_addresses() -> None:
    assert parse_address(":9962", "k") == ("0.0.0.0", 9962)
    assert parse_address("10.0.0.1:9965", "k") == ("10.0.0.1", 9965)
    assert parse_address("[::]:9963", "k") == ("::", 9963)
    for bad in ("9962", ":x", ":0", ""):
        with pytest.raises(ConfigError):
            parse_address(bad, "prometheus-serve-addr")


def test_helm_values_render_serve_addresses() -> None:
    def rendered(values: dict[str, object]) -> dict[str, str]:
        merged = chart.CHART_DEFAULTS | values
        return {k: r.value for k, r in chart.render(merged).items()}

    defaults = rendered({})
    assert "prometheus-serve-addr" not in defaults
    assert defaults["operator-prometheus-serve-addr"] == ":9963"
    on = rendered({"prometheus": {"enabled": True, "port": 9962}})
    assert on["prometheus-serve-addr"] == ":9962"
    off = rendered(
        {
            "operator": {
                **chart.CHART_DEFAULTS["operator"],
                "prometheus": {"enabled": False, "port": 9963},
            }
        }
    )
    assert off["operator-prometheus-serve-addr"] == ""


def test_operator_ipam_ips_from_cilium_nodes() -> None:
    nodes = [
        {
            "spec": {"ipam": {"podCIDRs": ["10.0.1.0/24"]}},
            "status": {"ipam": {"used": {"10.0.1.1": {}, "10.0.1.7": {}}}},
        },
        {"spec": {"ipam": {"pool": {"10.1.0.5": {}, "10.1.0.6": {}}}}, "status": {}},
        {"metadata": {"name": "fresh"}},
    ]
    assert ipam_ips(nodes) == {"available": 254 + 2, "used": 2}


def test_tcp_and_port_distribution_handlers() -> None:
    handlers, problems = parse_handlers(["tcp", "port-distribution"])
    assert not problems
    registry = CollectorRegistry()
    HubbleMetrics(handlers, registry).observe(
        [
            flow(event=EVENT_TRACE),  # SYN, to port 8080
            dataclasses.replace(flow(event=EVENT_TRACE), tcp_flags=0x12, is_reply=True),
            dataclasses.replace(flow(event=EVENT_TRACE), tcp_flags=0x11),  # FIN-ACK
            flow(event=EVENT_DROP, verdict=Verdict.DROPPED, reason=133),  # not forwarded
        ]
    )
    got = scrape(registry)
    assert got['hubble_tcp_flags_total{family="IPv4",flag="SYN"}'] == 1
    assert got['hubble_tcp_flags_total{family="IPv4",flag="SYN-ACK"}'] == 1
    assert got['hubble_tcp_flags_total{family="IPv4",flag="FIN"}'] == 1
    assert got['hubble_port_distribution_total{port="8080",protocol="TCP"}'] == 2


def test_agent_metrics_api_and_lost_events() -> None:
    settings = AgentSettings.from_configmap({"hubble-metrics-server": "", "hubble-metrics": "drop"})
    metrics = start(settings, FakeSources(), lambda listener: None)
    assert metrics.servers == [] and len(metrics.registries) == 1  # no servers asked for
    status, body = metrics.list_handler(request({"match": "^cilium_drop_count"}))
    assert status == 200 and {s["name"] for s in body} == {"cilium_drop_count_total"}
    denied = next(s for s in body if s["labels"]["reason"] == "Policy denied")
    assert denied == {
        "name": "cilium_drop_count_total",
        "labels": {"reason": "Policy denied", "direction": "INGRESS"},
        "value": 3.0,
    }
    listeners: list[object] = []
    with_hubble = AgentSettings.from_configmap(
        {"hubble-metrics-server": "", "hubble-metrics": "drop flow"}
    )
    assert len(start(with_hubble, FakeSources(), listeners.append).registries) == 1
    registry = CollectorRegistry()
    registry.register(LostEventsCollector(lambda: 7))
    assert samples(registry) == [
        {
            "name": "hubble_lost_events_total",
            "labels": {"source": "perf_event_ring_buffer"},
            "value": 7.0,
        }
    ]
    with pytest.raises(HttpError):
        metrics.list_handler(request({"match": "("}))


def request(query: dict[str, str]) -> Request:
    return Request("GET", "/v1/metrics", {}, query, None)
