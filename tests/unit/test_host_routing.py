"""BPF host routing's configuration: Helm ``bpf.hostLegacyRouting`` -> ConfigMap
``enable-host-legacy-routing``, upstream's fall-backs to Legacy with their reasons, and the
load-time constants the datapath gets."""

from __future__ import annotations

import sys
from ipaddress import IPv4Network

from pylium.core.settings import resolve
from pylium.core.settings.checks import HostRouting, host_routing, host_routing_constants
from pylium.model.config import AgentSettings

NATIVE = IPv4Network("10.0.0.0/8")


def settings(data: dict[str, str]) -> AgentSettings:
    return AgentSettings.from_configmap(data)


def test_helm_value_renders_the_configmap_key_and_defaults_to_bpf() -> None:
    resolved = resolve(sets=["bpf.hostLegacyRouting=true"])
    assert resolved.as_configmap()["enable-host-legacy-routing"] == "true"
    assert resolved.settings.enable_host_legacy_routing
    assert resolved.sources["enable-host-legacy-routing"] != "default"
    assert resolve().sources["enable-host-legacy-routing"] == "default"
    assert not AgentSettings().enable_host_legacy_routing


def test_bpf_by_default_routing_in_bpf_what_is_not_masqueraded() -> None:
    routing = host_routing(settings({}), masquerade_keep=(NATIVE,), missing_helpers=())
    assert routing == HostRouting(True, snat_exclusion=NATIVE)
    assert routing.mode == "BPF"
    unmasqueraded = host_routing(settings({}), masquerade_keep=(), missing_helpers=())
    assert unmasqueraded.bpf and unmasqueraded.snat_exclusion is None


def test_legacy_when_configured_or_when_the_node_cannot_have_it() -> None:
    configured = host_routing(
        settings({"enable-host-legacy-routing": "true"}), masquerade_keep=(), missing_helpers=()
    )
    assert configured == HostRouting(False) and configured.mode == "Legacy"
    routes = host_routing(
        settings({"enable-endpoint-routes": "true"}), masquerade_keep=(), missing_helpers=()
    )
    assert not routes.bpf and "enable-endpoint-routes" in routes.reason
    eni = host_routing(settings({"ipam": "eni"}), masquerade_keep=(), missing_helpers=())
    assert not eni.bpf and "ipam eni" in eni.reason
    for chained in ({"cni-chaining-mode": "portmap"}, {"cni-chained-plugins": "portmap"}):
        chain = host_routing(settings(chained), masquerade_keep=(), missing_helpers=())
        assert not chain.bpf and "CNI chaining" in chain.reason and "portmap" in chain.reason
    bandwidth = host_routing(
        settings({"cni-chained-plugins": "bandwidth"}), masquerade_keep=(), missing_helpers=()
    )
    assert bandwidth.bpf  # no netfilter rule of its own on pod traffic
    old_kernel = host_routing(
        settings({}), masquerade_keep=(), missing_helpers=("bpf_redirect_peer",)
    )
    assert not old_kernel.bpf
    assert old_kernel.reason == (
        "BPF host routing requires kernel 5.10 or newer (missing: bpf_redirect_peer)."
    )


def test_constants_carry_the_exclusion_in_network_order() -> None:
    def native(ip: str) -> int:
        return int.from_bytes(bytes(int(b) for b in ip.split(".")), sys.byteorder)

    assert host_routing_constants(HostRouting(True, snat_exclusion=IPv4Network("10.1.0.0/16"))) == {
        "enable_host_routing": 1,
        "enable_masquerade_ipv4": 1,
        "ipv4_snat_exclusion_dst_cidr": native("10.1.0.0"),
        "ipv4_snat_exclusion_dst_mask": native("255.255.0.0"),
    }
    assert host_routing_constants(HostRouting(False, "x")) == {
        "enable_host_routing": 0,
        "enable_masquerade_ipv4": 0,
        "ipv4_snat_exclusion_dst_cidr": 0,
        "ipv4_snat_exclusion_dst_mask": 0,
    }
