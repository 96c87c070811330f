"""L2: checks that span several keys, as the agent and operator make them at start-up.

:func:`check` returns (errors, warnings) as data: errors name the key, the value, what would
be allowed and where the value came from; warnings are non-fatal sentences. Sources:
``pkg/option/config.go``, ``pkg/kpr/initializer/kube_proxy_replacement.go``, the chart's
``fail`` calls, and the cluster-pool rules of ``Documentation/network/concepts/ipam``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from pylium.base.errors import ConfigError
from pylium.model.config import (
    AgentSettings,
    CNIChainedPlugin,
    CNIChainingMode,
    DSRDispatch,
    IPAMMode,
    LBMode,
    RoutingMode,
    TunnelProtocol,
)

# Blocks reserve the network and broadcast addresses: /30 leaves 2 pod IPs, /31 none.
MAX_IPV4_MASK = 30
RECOMMENDED_IPV4_MASK = 29
MAX_IPV6_MASK = 126
MAX_IPV6_MASK_BITS = 16  # mask size minus pool prefix length, per the operator's cidrset


class _Collector:
    def __init__(self, sources: Mapping[str, str]) -> None:
        self.sources = sources
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(ConfigError(key, message, source=self.sources.get(key, "default")))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f"{self.sources.get(key, 'default')}: {key}: {message}")


def check(
    settings: AgentSettings, sources: Mapping[str, str]
) -> tuple[list[ConfigError], list[str]]:
    """All cross-key problems of ``settings``; ``sources`` maps each key to its origin."""
    out = _Collector(sources)
    _families(settings, out)
    _cluster_pool(settings, out)
    _native_routing(settings, out)
    _direct_routes(settings, out)
    _load_balancing(settings, out)
    _ipam_limits(settings, out)
    return out.errors, out.warnings


def _families(s: AgentSettings, out: _Collector) -> None:
    if not s.enable_ipv4 and not s.enable_ipv6:
        out.error(
            "enable-ipv4", 'value "false": at least one of enable-ipv4, enable-ipv6 must be true'
        )


def _pool_masks(
    pools: tuple[IPv4Network, ...] | tuple[IPv6Network, ...],
    mask: int,
    family: str,
    out: _Collector,
) -> None:
    cidr_key = f"cluster-pool-{family}-cidr"
    mask_key = f"cluster-pool-{family}-mask-size"
    longest = MAX_IPV4_MASK if family == "ipv4" else MAX_IPV6_MASK
    if not pools:
        out.error(cidr_key, f"must be provided when using cluster-pool IPAM with enable-{family}")
        return
    for pool in pools:
        if mask < pool.prefixlen:
            out.error(
                mask_key,
                f'value "{mask}": must be >= the prefix length of {cidr_key} {pool} '
                f"(allowed: {pool.prefixlen}-{longest})",
            )
        elif family == "ipv6" and mask - pool.prefixlen > MAX_IPV6_MASK_BITS:
            out.error(
                mask_key,
                f'value "{mask}": at most {MAX_IPV6_MASK_BITS} bits longer than {pool} '
                f"(allowed: {pool.prefixlen}-{pool.prefixlen + MAX_IPV6_MASK_BITS})",
            )
    if mask > longest:
        out.error(
            mask_key,
            f'value "{mask}": a /{mask} node block leaves no pod IPs once network and '
            f"broadcast are reserved (allowed: up to /{longest}, /{RECOMMENDED_IPV4_MASK} "
            "or shorter recommended)"
            if family == "ipv4"
            else f'value "{mask}": leaves no pod IPs (allowed: up to /{longest})',
        )
    elif family == "ipv4" and mask == MAX_IPV4_MASK:
        out.warn(
            mask_key,
            f"/{mask} gives each node 2 pod IPs; "
            f"/{RECOMMENDED_IPV4_MASK} or shorter is recommended",
        )
    nets: list[IPv4Network | IPv6Network] = list(pools)
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.overlaps(b):
                out.error(cidr_key, f"pools {a} and {b} overlap")


def _cluster_pool(s: AgentSettings, out: _Collector) -> None:
    if s.ipam is not IPAMMode.CLUSTER_POOL:
        return
    if s.enable_ipv4:
        _pool_masks(s.cluster_pool_ipv4_cidr, s.cluster_pool_ipv4_mask_size, "ipv4", out)
    if s.enable_ipv6:
        _pool_masks(s.cluster_pool_ipv6_cidr, s.cluster_pool_ipv6_mask_size, "ipv6", out)


def _native_routing(s: AgentSettings, out: _Collector) -> None:
    if s.routing_mode is not RoutingMode.NATIVE:
        return
    cloud_ipam = s.ipam in (IPAMMode.ENI, IPAMMode.ALIBABACLOUD)
    needs_v4 = s.enable_ipv4 and s.enable_ipv4_masquerade and not s.enable_ip_masq_agent
    if needs_v4 and not cloud_ipam and s.ipv4_native_routing_cidr is None:
        out.error(
            "routing-mode",
            'value "native": ipv4-native-routing-cidr must be set (the CIDR routable without '
            "masquerading), unless IPAM is eni/alibabacloud, enable-ipv4-masquerade is false "
            "or enable-ip-masq-agent is true",
        )
    needs_v6 = s.enable_ipv6 and s.enable_ipv6_masquerade and not s.enable_ip_masq_agent
    if needs_v6 and s.ipv6_native_routing_cidr is None:
        out.error(
            "routing-mode",
            'value "native": ipv6-native-routing-cidr must be set when enable-ipv6 and '
            "enable-ipv6-masquerade are true",
        )
    native = s.ipv4_native_routing_cidr
    if native is not None and s.ipam is IPAMMode.CLUSTER_POOL and s.enable_ipv4:
        outside = [p for p in s.cluster_pool_ipv4_cidr if not p.subnet_of(native)]
        if outside:
            out.warn(
                "ipv4-native-routing-cidr",
                f"{native} does not contain cluster-pool-ipv4-cidr "
                f"{' '.join(map(str, outside))}: pod-to-pod traffic there will be masqueraded",
            )


def _direct_routes(s: AgentSettings, out: _Collector) -> None:
    if s.auto_direct_node_routes and s.routing_mode is RoutingMode.TUNNEL:
        out.error(
            "auto-direct-node-routes",
            'value "true": cannot be used with routing-mode tunnel (packets must go '
            "through the tunnel device); allowed with routing-mode native",
        )
    if s.direct_routing_skip_unreachable and not s.auto_direct_node_routes:
        out.error(
            "direct-routing-skip-unreachable",
            'value "true": requires auto-direct-node-routes: true',
        )
    if s.ipam is IPAMMode.ENI and not s.enable_endpoint_routes:
        out.warn("enable-endpoint-routes", "ENI IPAM expects enable-endpoint-routes: true")


def _load_balancing(s: AgentSettings, out: _Collector) -> None:
    tunnel = s.routing_mode is RoutingMode.TUNNEL
    vxlan = s.tunnel_protocol is TunnelProtocol.VXLAN
    dsr = s.bpf_lb_mode in (LBMode.DSR, LBMode.HYBRID)
    mode = s.bpf_lb_mode.value
    if tunnel and dsr and vxlan:
        out.error(
            "bpf-lb-mode",
            f'value "{mode}": with a VXLAN tunnel only snat is supported (allowed: snat; or '
            "use tunnel-protocol geneve with bpf-lb-dsr-dispatch geneve, or native routing)",
        )
    elif tunnel and dsr and s.bpf_lb_dsr_dispatch is not DSRDispatch.GENEVE:
        out.error(
            "bpf-lb-dsr-dispatch",
            f'value "{s.bpf_lb_dsr_dispatch.value}": bpf-lb-mode {mode} in a tunnel requires '
            "geneve dispatch (allowed: geneve)",
        )
    uses_dispatch = dsr or s.bpf_lb_mode_annotation
    if s.bpf_lb_dsr_dispatch is DSRDispatch.GENEVE and vxlan and uses_dispatch:
        out.error(
            "bpf-lb-dsr-dispatch",
            'value "geneve": requires tunnel-protocol geneve (allowed: opt, ipip)',
        )
    annotated_vxlan = tunnel and vxlan and s.bpf_lb_mode_annotation
    if annotated_vxlan and s.bpf_lb_dsr_dispatch is DSRDispatch.OPT:
        out.error(
            "bpf-lb-dsr-dispatch",
            f'value "{s.bpf_lb_dsr_dispatch.value}": with bpf-lb-mode-annotation in a VXLAN '
            "tunnel only ipip dispatch is supported (allowed: ipip)",
        )
    if dsr and not s.kube_proxy_replacement:
        out.warn(
            "bpf-lb-mode",
            f"{mode} only affects NodePort traffic, which needs kube-proxy-replacement: true",
        )


def _ipam_limits(s: AgentSettings, out: _Collector) -> None:
    if s.ipam_max_allocate and s.ipam_min_allocate > s.ipam_max_allocate:
        out.error(
            "ipam-min-allocate",
            f'value "{s.ipam_min_allocate}": must not exceed ipam-max-allocate '
            f"({s.ipam_max_allocate})",
        )


def lb_mode_notes(s: AgentSettings) -> tuple[str, ...]:
    """What the agent says at start about ``bpf-lb-mode`` (kube-proxy replacement on): DSR and
    hybrid need native routing (or a Geneve tunnel, which pylium lacks): through the tunnel
    remote backends are reached with SNAT; in native routing the frontend travels in the IPv4
    option (dispatch ``opt``) whatever ``bpf-lb-dsr-dispatch`` says."""
    if not s.kube_proxy_replacement or s.bpf_lb_mode is LBMode.SNAT:
        return ()
    mode = s.bpf_lb_mode.value
    if s.routing_mode is RoutingMode.TUNNEL:
        return (
            f"bpf-lb-mode {mode}: impossible in tunnel routing (DSR needs native routing, or "
            "Geneve, which pylium lacks); NodePort, LoadBalancer and ExternalIPs traffic to "
            "other nodes' backends is SNATed to this node (snat mode)",
        )
    if s.bpf_lb_dsr_dispatch is not DSRDispatch.OPT:
        return (
            f"bpf-lb-dsr-dispatch {s.bpf_lb_dsr_dispatch.value}: not implemented by pylium; "
            "the frontend travels in the IPv4 option (opt)",
        )
    return ()


DATAPATH_LB_MODES = {LBMode.SNAT: 0, LBMode.DSR: 1, LBMode.HYBRID: 2}
"""bpf_host's ``nodeport_mode`` load-time constant (bpf/lib/nodeport.h)."""


def datapath_lb_mode(s: AgentSettings) -> int:
    """The ``nodeport_mode`` bpf_host runs: ``bpf-lb-mode`` in native routing, snat through
    the tunnel (:func:`lb_mode_notes` says so)."""
    if s.routing_mode is RoutingMode.TUNNEL:
        return DATAPATH_LB_MODES[LBMode.SNAT]
    return DATAPATH_LB_MODES[s.bpf_lb_mode]


@dataclass(frozen=True, slots=True)
class HostRouting:
    """How the node routes pods' traffic: in eBPF (upstream's "Host Routing: BPF") or through
    its stack ("Legacy"), and why Legacy when BPF was not configured away."""

    bpf: bool
    reason: str = ""
    """Why BPF host routing is off: upstream's sentence, or empty when configured so."""
    snat_exclusion: IPv4Network | None = None
    """With masquerading on: the destinations that keep the pod's address, which BPF host
    routing may send itself (others go through the stack, where nftables masquerades them).
    None: masquerading is off."""

    @property
    def mode(self) -> str:
        """As ``cilium-dbg status`` prints it (``Host: BPF`` / ``Host: Legacy``)."""
        return "BPF" if self.bpf else "Legacy"


def host_routing(
    s: AgentSettings,
    *,
    masquerade_keep: Sequence[IPv4Network],
    missing_helpers: Sequence[str],
) -> HostRouting:
    """BPF host routing unless ``enable-host-legacy-routing`` is set or the node cannot have it
    (upstream's fall-backs in ``daemon/cmd/kube_proxy_replacement.go``: endpoint routes, the
    kernel's helpers; and CNI chaining, whose plugins' netfilter rules BPF routing would
    skip). ``masquerade_keep``: the destinations not masqueraded (empty: masquerading off);
    ``missing_helpers``: the BPF helpers the kernel lacks.

    Unlike upstream, iptables-style masquerading and kube-proxy-replacement off do not force
    Legacy: pylium masquerades in nftables, so packets to be masqueraded still take the stack
    (only the first of several non-masquerade CIDRs is routed in BPF; the others take the
    stack too, which is always correct), and without kube-proxy replacement no netfilter
    service translation exists for BPF routing to skip (ClusterIPs are socket-LB's)."""
    if s.enable_host_legacy_routing:
        return HostRouting(False)
    reason = ""
    if s.enable_endpoint_routes:
        reason = "BPF host routing is currently not supported with enable-endpoint-routes."
    elif s.ipam is IPAMMode.ENI:
        reason = (
            "BPF host routing is not supported with ipam eni (its masquerading and per-ENI "
            "routing tables are the stack's)."
        )
    elif s.cni_chaining_mode is not CNIChainingMode.NONE or (
        CNIChainedPlugin.PORTMAP in s.cni_chained_plugins
    ):
        chain = (
            f"cni-chaining-mode={s.cni_chaining_mode.value}"
            if s.cni_chaining_mode is not CNIChainingMode.NONE
            else "cni-chained-plugins with portmap"
        )
        reason = (
            f"BPF host routing is not supported with CNI chaining ({chain}): the chained "
            "plugins' netfilter rules (portmap's DNAT and its reverse) need the stack."
        )
    elif missing_helpers:
        reason = (
            "BPF host routing requires kernel 5.10 or newer (missing: "
            f"{', '.join(missing_helpers)})."
        )
    if reason:
        return HostRouting(False, reason)
    return HostRouting(True, snat_exclusion=masquerade_keep[0] if masquerade_keep else None)


def host_routing_constants(routing: HostRouting) -> dict[str, int]:
    """The load-time constants of bpf/lib/config.h that carry ``routing`` (addresses as the
    kernel holds them: network order in memory, read as a native integer)."""
    exclusion = routing.snat_exclusion
    return {
        "enable_host_routing": int(routing.bpf),
        "enable_masquerade_ipv4": int(exclusion is not None),
        "ipv4_snat_exclusion_dst_cidr": _native(exclusion.network_address.packed)
        if exclusion is not None
        else 0,
        "ipv4_snat_exclusion_dst_mask": _native(exclusion.netmask.packed)
        if exclusion is not None
        else 0,
    }


def _native(packed: bytes) -> int:
    return int.from_bytes(packed, sys.byteorder)
