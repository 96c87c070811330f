"""The Hubble UI's service map and filters (pure), and the UI server's routes over a collector
fed by hand (no sockets)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from pylium.core.hubble.flow import (
    EVENT_DROP,
    EVENT_TRACE,
    Endpoint,
    Flow,
    PolicyRef,
    TraceObservationPoint,
    TrafficDirection,
    Verdict,
)
from pylium.core.hubble.servicemap import flow_matches, map_node, namespaces, service_map
from pylium.lab import hubble_ui
from pylium.lab.hubble_ui import STATIC, FlowCollector, UIApp

CLIENT = Endpoint(300, ("k8s:app=client", "k8s:io.kubernetes.pod.namespace=default"), 12,
                  "default", "client-7d9f")  # fmt: skip
CLIENT2 = Endpoint(300, ("k8s:app=client",), 13, "default", "client-55aa")
SERVER = Endpoint(301, ("k8s:app=server",), 14, "prod", "server-0")
WORLD = Endpoint(2, ("reserved:world",))
HOST = Endpoint(1, ("reserved:host",))
DENY = PolicyRef("server-ingress", "prod", "CiliumNetworkPolicy")


def flow(src: Endpoint, dst: Endpoint, verdict: Verdict = Verdict.FORWARDED, *, port: int = 8080,
         reply: bool | None = False, t: int = 1,
         point: TraceObservationPoint = TraceObservationPoint.TO_ENDPOINT) -> Flow:  # fmt: skip
    return Flow(
        time_ns=t,
        node_name="n1",
        verdict=verdict,
        event_type=EVENT_DROP if verdict is Verdict.DROPPED else EVENT_TRACE,
        source_ip="10.0.1.5",
        destination_ip="10.0.2.7",
        proto=6,
        source_port=40000,
        destination_port=port,
        tcp_flags=2,
        source=src,
        destination=dst,
        traffic_direction=TrafficDirection.INGRESS,
        is_reply=reply,
        drop_reason=133 if verdict is Verdict.DROPPED else 0,
        trace_observation_point=point
        if verdict is not Verdict.DROPPED
        else TraceObservationPoint.UNKNOWN_POINT,
        denied_by=(DENY,) if verdict is Verdict.DROPPED else (),
    )


def test_map_nodes_group_by_app_and_keep_reserved_apart() -> None:
    assert map_node(CLIENT, "10.0.1.5").id == "default/client"
    assert map_node(CLIENT2, "10.0.1.6").id == "default/client"  # same app: one workload
    assert map_node(WORLD, "1.1.1.1").id == "reserved:world"
    assert map_node(HOST, "192.168.0.1").kind == "reserved"
    assert map_node(Endpoint(9999), "10.9.9.9").id == "identity:9999"
    assert map_node(Endpoint(0), "10.9.9.9").id == "ip:10.9.9.9"
    assert map_node(Endpoint(300, (), 0, "default", "lonely"), "x").id == "default/lonely"


def test_service_map_edges_coloured_by_verdict() -> None:
    flows = [
        flow(CLIENT, SERVER),
        flow(CLIENT2, SERVER, Verdict.DROPPED),
        flow(SERVER, CLIENT, reply=True),  # a reply: no edge back
        flow(WORLD, SERVER, Verdict.DROPPED, port=443),
        flow(HOST, CLIENT, port=80),
    ]
    got = service_map(flows)
    assert [n["id"] for n in got["nodes"]] == [
        "default/client",
        "prod/server",
        "reserved:host",
        "reserved:world",
    ]
    edges = {(e["source"], e["target"], e["port"]): e for e in got["edges"]}
    assert len(edges) == 3
    mixed = edges[("default/client", "prod/server", 8080)]
    assert mixed["verdict"] == "mixed" and mixed["verdicts"] == {"DROPPED": 1, "FORWARDED": 1}
    assert mixed["policies"] == ["CiliumNetworkPolicy prod/server-ingress"]
    assert edges[("reserved:world", "prod/server", 443)]["verdict"] == "dropped"
    assert edges[("reserved:host", "default/client", 80)]["verdict"] == "forwarded"
    # Sent into the tunnel by one node, dropped by the other's policy: a drop, not "mixed".
    hop = flow(CLIENT, SERVER, point=TraceObservationPoint.TO_OVERLAY)
    tunnelled = service_map([hop, flow(CLIENT, SERVER, Verdict.DROPPED)])["edges"]
    assert [e["verdict"] for e in tunnelled] == ["dropped"]
    assert tunnelled[0]["verdicts"] == {"DROPPED": 1, "FORWARDED": 1}
    assert service_map([hop])["edges"][0]["verdict"] == "forwarded"
    non_ip = dataclasses.replace(flow(Endpoint(0), Endpoint(0), Verdict.DROPPED), proto=0)
    assert service_map([non_ip]) == {"nodes": [], "edges": []}
    only_prod = service_map(flows, "prod")
    assert "reserved:host" not in [n["id"] for n in only_prod["nodes"]]
    assert service_map([]) == {"nodes": [], "edges": []}


def test_flow_filters() -> None:
    dropped = flow(CLIENT, SERVER, Verdict.DROPPED)
    assert flow_matches(dropped)
    assert flow_matches(dropped, namespace="prod") and not flow_matches(dropped, namespace="x")
    assert flow_matches(dropped, verdict="dropped") and not flow_matches(dropped, verdict="AUDIT")
    assert not flow_matches(dropped, verdict="nonsense")
    assert flow_matches(dropped, pod="prod/server") and flow_matches(dropped, pod="client-7")
    assert not flow_matches(dropped, pod="default/server")
    assert namespaces([dropped, flow(WORLD, HOST)]) == ["default", "prod"]


def test_ui_routes_over_collected_flows() -> None:
    collector = FlowCollector({"n1": Path("/nonexistent.sock")})
    collector._add([flow(CLIENT, SERVER, t=2), flow(CLIENT, SERVER, Verdict.DROPPED, t=3)])
    app = UIApp("nolab", collector)
    everything = app.flows({})
    assert everything["seq"] == 2 and [f["seq"] for f in everything["flows"]] == [1, 2]
    dropped = app.flows({"verdict": "DROPPED"})["flows"]
    assert len(dropped) == 1 and dropped[0]["ingress_denied_by"][0]["name"] == "server-ingress"
    assert app.flows({"after": "2"})["flows"] == []
    assert app.flows({"limit": "1"})["flows"][0]["seq"] == 2
    assert [e["verdict"] for e in app.map({})["edges"]] == ["mixed"]
    status = app.status({})
    assert status["lab"] == "nolab" and status["namespaces"] == ["default", "prod"]
    assert status["nodes"] == {"n1": {"connected": False, "error": ""}}
    for name in ("index.html", "app.js", "app.css"):
        assert (STATIC / name).is_file()


def test_collector_rereads_a_restarted_agents_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sequence numbers going back (a restarted agent) make the collector start over."""
    answers = [
        {"seq": 5, "flows": [flow(CLIENT, SERVER, t=1).to_json()]},
        {"seq": 2, "flows": []},  # restarted: seq went back
        {"seq": 2, "flows": [flow(CLIENT, SERVER, Verdict.DROPPED, t=9).to_json()]},
    ]
    calls: list[dict[str, str]] = []
    stop = threading.Event()

    class FakeClient:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def get(self, path: str, **query: str) -> dict[str, object]:
            calls.append(query)
            if len(calls) >= len(answers):
                stop.set()
            return answers[min(len(calls), len(answers)) - 1]

    monkeypatch.setattr(hubble_ui, "AgentClient", FakeClient)
    collector = FlowCollector({"n1": Path("/x.sock")})
    collector._follow("n1", Path("/x.sock"), stop, initial=10)
    assert [set(c) for c in calls] == [{"number"}, {"after", "wait"}, {"number"}]
    flows, seq = collector.snapshot()
    assert seq == 2 and [f.verdict for _, f in flows] == [Verdict.FORWARDED, Verdict.DROPPED]
