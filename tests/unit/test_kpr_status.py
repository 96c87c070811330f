"""The KubeProxyReplacement status model from the agent's settings and its
``KubeProxyReplacement Details:`` section in ``pylium status --node N --verbose``."""

from __future__ import annotations

from pylium.agent.status import kube_proxy_replacement
from pylium.core.status import format_status_response, kube_proxy_replacement_details
from pylium.model.config import AgentSettings


def test_kpr_details_with_maglev() -> None:
    s = AgentSettings.from_configmap(
        {
            "kube-proxy-replacement": "true",
            "bpf-lb-algorithm": "maglev",
            "bpf-lb-maglev-table-size": "251",
            "node-port-range": "30000,32000",
        }
    )
    lines = kube_proxy_replacement_details(kube_proxy_replacement(s, [("eth0", "10.0.0.5")]))
    assert lines == [
        "KubeProxyReplacement Details:",
        "  Status:               True",
        "  Socket LB:            Enabled",
        "  Socket LB Tracing:    Disabled",
        "  Socket LB Coverage:   Full",
        "  Devices:              eth0 10.0.0.5 (Direct Routing)",
        "  Mode:                 SNAT",
        "  Backend Selection:    Maglev (Table Size: 251)",
        "  Session Affinity:     Enabled",
        "  NAT46/64 Support:     Disabled",
        "  XDP Acceleration:     None",
        "  Services:",
        "  - ClusterIP:      Enabled",
        "  - NodePort:       Enabled (Range: 30000-32000)",
        "  - LoadBalancer:   Enabled",
        "  - externalIPs:    Enabled",
        "  - HostPort:       Enabled",
        "  Annotations:",
        "  - service.cilium.io/node",
        "  - service.cilium.io/node-selector",
        "  - service.cilium.io/type",
    ]


def test_kpr_off_and_dsr() -> None:
    off = kube_proxy_replacement(AgentSettings.from_configmap({}), [])
    lines = kube_proxy_replacement_details(off)
    assert "  Status:               False" in lines
    assert not any(line.startswith("  Devices:") for line in lines)
    assert "  - NodePort:       Disabled" in lines and "  - HostPort:       Disabled" in lines
    assert lines[-1] == "  Annotations:   (n/a)"
    dsr = kube_proxy_replacement(
        AgentSettings.from_configmap(
            {
                "kube-proxy-replacement": "true",
                "bpf-lb-mode": "hybrid",
                "bpf-lb-sock-hostns-only": "true",
            }
        ),
        [("eth0", "10.0.0.5")],
    )
    lines = kube_proxy_replacement_details(dsr)
    assert "  Mode:                  Hybrid" in lines
    assert "    DSR Dispatch Mode:   IP Option/Extension" in lines
    assert "  Socket LB Coverage:    Hostns-only" in lines


def test_section_only_with_verbose() -> None:
    resp = {"kube-proxy-replacement": kube_proxy_replacement(AgentSettings.from_configmap({}), [])}
    assert "KubeProxyReplacement Details:" in format_status_response(resp, verbose=True)
    assert "KubeProxyReplacement Details:" not in format_status_response(resp)
