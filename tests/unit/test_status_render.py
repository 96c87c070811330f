"""``pylium status``: the cluster view (``cilium status``) from store facts and the node view
(``cilium-dbg status``) from a StatusResponse, as text and JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pylium.core.health import Connectivity, HealthBook, Target
from pylium.core.status import (
    cluster_status,
    failing,
    format_status_response,
    render_cluster_status,
)

NOW = datetime(2026, 12, 1, 21, 0, 10, tzinfo=UTC)
OK = Connectivity(latency_ns=50_000)
REFUSED = Connectivity(status="Get http://192.168.250.12:4240/hello: connection refused")


def report(n2_http: Connectivity = OK) -> Any:
    book = HealthBook(local="n1")
    book.record(Target("n1", "192.168.250.11"), OK, OK, 1.0)
    book.record(Target("n2", "192.168.250.12"), OK, n2_http, 1.0)
    return book.report(timestamp=datetime(2026, 12, 1, 21, 0, 0, tzinfo=UTC), interval=66.0)


def healthy_cluster(**overrides: Any) -> Any:
    args: dict[str, Any] = {
        "nodes": ["n1", "n2"],
        "cilium_nodes": ["n1", "n2"],
        "heartbeats": ["n1", "n2"],
        "leader": "lab-operator",
        "pods": [("default", "web"), ("default", "db"), ("kube-system", "x")],
        "endpoints": [("default", "web"), ("default", "db")],
        "health_reports": {"n1": report(), "n2": report()},
        "version": "0.1.0",
    }
    args.update(overrides)
    return cluster_status(**args)


def line_with(lines: list[str], start: str) -> str:
    found = [ln for ln in lines if ln.strip().startswith(start.strip())]
    found = found or [ln for ln in lines if start in ln]
    assert found, f"no line with {start!r} in:\n" + "\n".join(lines)
    return found[0]


def test_healthy_cluster_text() -> None:
    st = healthy_cluster()
    assert st.ready
    lines = render_cluster_status(st)
    assert lines[0] == "    /¯¯\\"
    assert lines[1] == " /¯¯\\__/¯¯\\    Cilium:             OK"
    assert lines[2] == " \\__/¯¯\\__/    Operator:           OK"
    assert lines[4] == " \\__/¯¯\\__/    Hubble Relay:       disabled"
    assert lines[5] == "    \\__/       ClusterMesh:        disabled"
    assert line_with(lines, "DaemonSet").split(None, 2) == [
        "DaemonSet",
        "cilium",
        "Desired: 2, Ready: 2/2, Available: 2/2",
    ]
    assert "Desired: 1, Ready: 1/1, Available: 1/1" in line_with(lines, "Deployment")
    assert line_with(lines, "Containers:").split() == ["Containers:", "cilium", "Running:", "2"]
    assert line_with(lines, "Cluster Pods:").split(None, 2)[2] == "2/3 managed by Cilium"
    assert "2/2 reachable" in line_with(lines, "Cluster health:")
    assert "pylium-agent:v0.1.0: 2" in line_with(lines, "Image versions")
    assert not [ln for ln in lines if ln.startswith(("Errors:", "Warnings:"))]


def test_dead_agent_is_not_ready_and_says_what_to_do() -> None:
    st = healthy_cluster(heartbeats=["n1"], health_reports={"n1": report(REFUSED)})
    assert not st.ready
    assert st.agents.ready == 1
    lines = render_cluster_status(st)
    assert line_with(lines, "Cilium:").endswith("1 errors, 1 warnings")
    assert "Ready: 1/2, Available: 1/2, Unavailable: 1/2" in line_with(lines, "DaemonSet")
    assert "Running: 1, Unknown: 1" in line_with(lines, "Containers:")
    errors = line_with(lines, "Errors:")
    assert "n2" in errors and "no heartbeat" in errors and "pylium lab restart n2" in errors
    warning = line_with(lines, "Warnings:")
    assert "host reachable but its agent is not" in warning and "ICMP ok" in warning
    assert "1/2 reachable" in line_with(lines, "Cluster health:")
    data = st.to_json()
    assert data["daemonsets"]["cilium"]["ready"] == 1
    assert data["cilium"] == "1 errors, 1 warnings"
    assert data["ready"] is False


def test_no_operator_leader() -> None:
    st = healthy_cluster(leader="")
    assert not st.ready
    lines = render_cluster_status(st)
    assert line_with(lines, "Operator:").endswith("1 errors")
    assert "Ready: 0/1" in line_with(lines, "Deployment")
    assert "operator/leader" in line_with(lines, "Errors:")


def test_no_health_reports_yet() -> None:
    lines = render_cluster_status(healthy_cluster(health_reports={}))
    assert "no agent has reported" in line_with(lines, "Cluster health:")


def status_response(**overrides: Any) -> dict[str, Any]:
    resp: dict[str, Any] = {
        "kvstore": {"state": "Ok", "msg": "local: /x/store.sqlite, heartbeat lease 2"},
        "kubernetes": {"state": "Disabled", "msg": "no Kubernetes API server"},
        "kube-proxy-replacement": {"mode": "False"},
        "host-firewall": {"mode": "Disabled"},
        "cni-chaining": {"mode": "none"},
        "cni-file": {"path": "/x/05-cilium.conflist", "msg": "successfully wrote ..."},
        "cilium": {"state": "Ok", "msg": "0.1.0"},
        "cilium-health": {"state": "Ok", "msg": ""},
        "ipam": {"state": "Ok", "msg": "IPv4: 3/254 allocated from 10.0.1.0/24", "mode": "x"},
        "routing": {
            "inter-host-routing-mode": "Tunnel",
            "tunnel-protocol": "vxlan",
            "intra-host-routing-mode": "Legacy",
        },
        "attach-mode": "Legacy TC",
        "datapath-mode": "veth",
        "masquerading": {
            "enabled": True,
            "mode": "IPTables (nftables)",
            "enabledProtocols": {"ipv4": True, "ipv6": False},
        },
        "controllers": [
            {
                "name": "ipam-sync-cidrs",
                "status": {
                    "consecutive-failure-count": 0,
                    "last-success-timestamp": "2026-12-01T21:00:07Z",
                },
            },
            {
                "name": "sync-node-heartbeat",
                "status": {
                    "consecutive-failure-count": 0,
                    "last-success-timestamp": "2026-12-01T21:00:05Z",
                },
            },
        ],
        "proxy": None,
        "identity-range": {"min-identity": 256, "max-identity": 65535},
        "hubble": {"state": "Disabled", "msg": "not implemented yet"},
        "encryption": {"mode": "Disabled"},
        "cluster": {"health": report().to_json()},
    }
    resp.update(overrides)
    return resp


def test_node_status_lines_in_upstream_order() -> None:
    lines = format_status_response(status_response(), now=NOW)
    labels = [ln.split(":")[0] for ln in lines]
    order = [
        "KVStore",
        "Kubernetes",
        "KubeProxyReplacement",
        "Host firewall",
        "CNI Chaining",
        "Cilium",
        "Cilium health daemon",
        "IPAM",
        "Routing",
        "Masquerading",
        "Controller Status",
        "Proxy Status",
        "Global Identity Range",
        "Hubble",
        "Encryption",
        "Cluster health",
    ]
    assert [lb for lb in labels if lb in order] == order
    assert lines[0] == "KVStore:                 Ok   local: /x/store.sqlite, heartbeat lease 2"
    assert line_with(lines, "IPAM:").split(None, 1)[1] == "IPv4: 3/254 allocated from 10.0.1.0/24"
    assert (
        line_with(lines, "Routing:").split(None, 1)[1] == "Network: Tunnel [vxlan]   Host: Legacy"
    )
    assert line_with(lines, "KubeProxyReplacement:").split()[1] == "False"
    assert line_with(lines, "Masquerading:").endswith("[IPv4: Enabled, IPv6: Disabled]")
    assert line_with(lines, "Controller Status:").split(None, 2)[2] == "2/2 healthy"
    assert line_with(lines, "Encryption:").split()[1] == "Disabled"
    assert "2/2 reachable" in line_with(lines, "Cluster health:")
    assert not [ln for ln in lines if "->" in ln]  # nothing failing, nothing expanded
    assert failing(status_response()) == []


def test_native_routing_line() -> None:
    resp = status_response(
        routing={"inter-host-routing-mode": "Native", "intra-host-routing-mode": "Legacy"}
    )
    lines = format_status_response(resp, now=NOW)
    assert line_with(lines, "Routing:").split(None, 1)[1] == "Network: Native   Host: Legacy"


def test_failing_subsystems_expand_with_a_hint() -> None:
    resp = status_response(
        kvstore={"state": "Failure", "msg": "etcd: lease expired", "hint": "check the store"},
        ipam={"state": "Failure", "msg": "no pod CIDR yet", "hint": "ask the operator"},
        controllers=[
            {
                "name": "sync-node-heartbeat",
                "status": {
                    "consecutive-failure-count": 3,
                    "last-success-timestamp": "2026-12-01T21:00:00Z",
                    "last-failure-timestamp": "2026-12-01T21:00:09Z",
                    "last-failure-msg": "lease 2 expired",
                },
            }
        ],
        cluster={"health": report(REFUSED).to_json()},
    )
    lines = format_status_response(resp, now=NOW)
    i = lines.index(line_with(lines, "KVStore:"))
    assert lines[i + 1] == "  -> check the store"
    assert "  -> ask the operator" in lines
    assert "0/1 healthy" in line_with(lines, "Controller Status:")
    row = line_with(lines, "  sync-node-heartbeat")
    assert row.split()[1:5] == ["10s", "ago", "1s", "ago"]
    assert row.rstrip().endswith("lease 2 expired")
    assert "1/2 reachable" in line_with(lines, "Cluster health:")
    assert line_with(lines, "  n2 ").split() == ["n2", "192.168.250.12", "1/2", "n/a"]
    assert failing(resp) == ["kvstore", "ipam", "controller sync-node-heartbeat"]


def test_verbose_lists_every_controller_and_node() -> None:
    lines = format_status_response(status_response(), verbose=True, now=NOW)
    assert line_with(lines, "  ipam-sync-cidrs").split()[1:3] == ["3s", "ago"]
    assert line_with(lines, "  n1 (localhost)").split()[3] == "2/2"
