"""Helm values -> cilium-config keys, provenance, and every configuration example of the seeds."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from pylium.core.settings import chart, resolve
from pylium.model.config import (
    AgentSettings,
    ConfigErrors,
    IPAMMode,
    LBAlgorithm,
    OperatorSettings,
    RoutingMode,
    TunnelProtocol,
)


def test_chart_defaults_render_exactly_the_dataclass_defaults() -> None:
    resolved = resolve()
    assert resolved.settings == AgentSettings()
    assert resolved.operator == OperatorSettings()
    assert set(resolved.sources.values()) == {"default"}
    assert resolved.warnings == ()


def test_configmap_round_trips_through_the_agent() -> None:
    resolved = resolve(sets=["loadBalancer.algorithm=maglev,kubeProxyReplacement=true"])
    again = AgentSettings.from_configmap(resolved.as_configmap())
    assert again == resolved.settings
    assert again.bpf_lb_sock  # forced by kube-proxy-replacement


def test_every_row_key_is_a_settings_key_and_every_path_is_known() -> None:
    keys = {**AgentSettings.keys(), **OperatorSettings.keys()}
    assert {r.key for r in chart.ROWS} <= set(keys)
    known = chart.known_paths()
    assert all(p in known for r in chart.ROWS for p in r.paths)


# --- seed 004 §8.1: the ConfigMap example ---------------------------------------------------
def test_seed_004_configmap_example() -> None:
    data = {
        "ipam": "cluster-pool",
        "cluster-pool-ipv4-cidr": "10.0.0.0/8",
        "cluster-pool-ipv4-mask-size": "24",
    }
    resolved = resolve(configmap=("cilium-config.yaml", data))
    s = resolved.settings
    assert s.ipam is IPAMMode.CLUSTER_POOL
    assert s.cluster_pool_ipv4_cidr == (IPv4Network("10.0.0.0/8"),)
    assert s.cluster_pool_ipv4_mask_size == 24
    for key in data:
        assert resolved.sources[key] == "configmap cilium-config.yaml"


# --- seed 003: helm install --set ipam.* ----------------------------------------------------
def test_seed_003_cluster_pool_sets() -> None:
    resolved = resolve(
        sets=[
            "ipam.mode=cluster-pool",
            # a plain string, as the seed writes it
            "ipam.operator.clusterPoolIPv4PodCIDRList=10.244.0.0/16",
            "ipam.operator.clusterPoolIPv4MaskSize=24",
        ]
    )
    cm = resolved.as_configmap()
    assert cm["ipam"] == "cluster-pool"
    assert cm["cluster-pool-ipv4-cidr"] == "10.244.0.0/16"
    assert cm["cluster-pool-ipv4-mask-size"] == "24"
    assert resolved.sources["cluster-pool-ipv4-cidr"] == "--set"
    assert resolved.operator.cluster_pool_ipv4_cidr == (IPv4Network("10.244.0.0/16"),)


def test_cluster_pool_list_literal_is_space_joined() -> None:
    resolved = resolve(sets=["ipam.operator.clusterPoolIPv4PodCIDRList={10.0.0.0/16,10.1.0.0/16}"])
    assert resolved.as_configmap()["cluster-pool-ipv4-cidr"] == "10.0.0.0/16 10.1.0.0/16"


# --- seed 002: CNI, kube-proxy replacement, Maglev, BPFFS and cgroup mounts -----------------
def test_seed_002_kube_proxy_replacement_and_maglev() -> None:
    resolved = resolve(
        sets=[
            "kubeProxyReplacement=true",
            "loadBalancer.algorithm=maglev",
            "k8sServiceHost=192.168.0.10",
            "k8sServicePort=6443",
        ]
    )
    s = resolved.settings
    assert s.kube_proxy_replacement and s.bpf_lb_sock
    assert s.bpf_lb_algorithm is LBAlgorithm.MAGLEV
    assert resolved.sources["bpf-lb-algorithm"] == "--set"
    assert any("k8sServiceHost" in w for w in resolved.warnings)


def test_seed_002_mounts() -> None:
    s = resolve(
        sets=[
            "bpf.autoMount.enabled=false",
            "cgroup.autoMount.enabled=false",
            "cgroup.hostRoot=/sys/fs/cgroup",
        ]
    ).settings
    assert (s.bpf_auto_mount, s.cgroup_auto_mount, s.cgroup_root) == (
        False,
        False,
        "/sys/fs/cgroup",
    )


def test_seed_002_read_cni_conf() -> None:
    cm = resolve(sets=["cni.readCniConf=/etc/cni/custom.conflist"]).as_configmap()
    assert cm["read-cni-conf"] == "/etc/cni/custom.conflist"


def test_custom_conf_maps_to_custom_cni_conf_not_cni_exclusive() -> None:
    # The seed says cni.customConf becomes cni-exclusive; upstream renders custom-cni-conf and
    # leaves cni-exclusive/write-cni-conf-when-ready out (the agent defaults: false / "").
    resolved = resolve(sets=["cni.customConf=true"])
    cm = resolved.as_configmap()
    assert cm["custom-cni-conf"] == "true"
    assert cm["write-cni-conf-when-ready"] == ""
    assert cm["cni-exclusive"] == "false"
    assert resolved.sources["custom-cni-conf"] == "--set"


def test_seed_000_cni_configmap_for_eni() -> None:
    cm = resolve(sets=["cni.customConf=true", "cni.configMap=cni-configuration"]).as_configmap()
    assert cm["read-cni-conf"] == "/tmp/cni-configuration/cni-config"
    assert cm["custom-cni-conf"] == "true"
    # legacy v1.13 behaviour kept by the chart: configMap + customConf still writes the file
    assert cm["write-cni-conf-when-ready"] == "/host/etc/cni/net.d/05-cilium.conflist"


def test_cni_exclusive_and_install() -> None:
    assert resolve(sets=["cni.exclusive=false"]).as_configmap()["cni-exclusive"] == "false"
    cm = resolve(sets=["cni.install=false"]).as_configmap()
    assert cm["write-cni-conf-when-ready"] == ""


# --- seed 000: routing modes and ENI ----------------------------------------------------------
def test_seed_000_native_routing_configmap() -> None:
    s = resolve(
        configmap=(
            "cm",
            {
                "routing-mode": "native",
                "ipv4-native-routing-cidr": "10.0.0.0/8",
                "auto-direct-node-routes": "true",
                "direct-routing-skip-unreachable": "true",
            },
        )
    ).settings
    assert s.routing_mode is RoutingMode.NATIVE
    assert s.ipv4_native_routing_cidr == IPv4Network("10.0.0.0/8")
    assert s.auto_direct_node_routes and s.direct_routing_skip_unreachable


def test_seed_000_eni_configmap() -> None:
    resolved = resolve(
        configmap=(
            "cm",
            {
                "ipam": "eni",
                "routing-mode": "native",
                "enable-endpoint-routes": "true",
                "auto-create-cilium-node-resource": "true",
                "egress-masquerade-interfaces": "eth+",
                "aws-release-excess-ips": "true",
                "eni-gc-tags": '{"team":"net"}',
            },
        )
    )
    assert resolved.settings.ipam is IPAMMode.ENI  # native without a CIDR is fine with ENI
    assert resolved.settings.egress_masquerade_interfaces == ("eth+",)
    assert resolved.operator.aws_release_excess_ips
    assert resolved.operator.eni_gc_tags == (("team", "net"),)


def test_eni_enabled_helm_value_implies_eni_keys() -> None:
    cm = resolve(sets=["eni.enabled=true", "eni.awsReleaseExcessIPs=true"]).as_configmap()
    assert cm["ipam"] == "eni"
    assert cm["routing-mode"] == "native"
    assert cm["enable-endpoint-routes"] == "true"
    assert cm["enable-ipv4-masquerade"] == "false"
    assert cm["aws-release-excess-ips"] == "true"


def test_seed_000_gke_needs_native_routing_cidr() -> None:
    with pytest.raises(ConfigErrors) as err:
        resolve(sets=["gke.enabled=true"])
    assert "ipv4-native-routing-cidr must be set" in str(err.value)
    s = resolve(sets=["gke.enabled=true", "ipv4NativeRoutingCIDR=10.0.0.0/8"]).settings
    assert s.routing_mode is RoutingMode.NATIVE and s.enable_endpoint_routes


# --- seed 001: the legacy quick-install ConfigMap ---------------------------------------------
def test_seed_001_legacy_tunnel_disabled() -> None:
    resolved = resolve(
        configmap=(
            "quick-install.yaml",
            {
                "tunnel": "disabled",
                "native-routing-cidr": "10.17.0.0/16",
                "cluster-name": "default",
            },
        )
    )
    s = resolved.settings
    assert s.routing_mode is RoutingMode.NATIVE
    assert s.ipv4_native_routing_cidr == IPv4Network("10.17.0.0/16")
    assert len([w for w in resolved.warnings if "deprecated" in w]) == 2


def test_seed_001_legacy_tunnel_vxlan() -> None:
    s = resolve(configmap=("cm", {"tunnel": "geneve"})).settings
    assert (s.routing_mode, s.tunnel_protocol) == (RoutingMode.TUNNEL, TunnelProtocol.GENEVE)
    assert s.effective_tunnel_port == 6081


# --- precedence and provenance ---------------------------------------------------------------
def test_precedence_default_configmap_files_set() -> None:
    resolved = resolve(
        values_files=[
            ("a.yaml", {"debug": {"enabled": True}, "cluster": {"name": "a"}}),
            ("b.yaml", {"cluster": {"name": "b"}}),
        ],
        sets=["cluster.id=7"],
        set_strings=["cluster.name=c"],
        configmap=("cm", {"cluster-id": "3", "mtu": "1400", "debug": "false"}),
    )
    s, src = resolved.settings, resolved.sources
    assert (s.cluster_name, src["cluster-name"]) == ("c", "--set-string")
    assert (s.cluster_id, src["cluster-id"]) == (7, "--set")
    assert (s.mtu, src["mtu"]) == (1400, "configmap cm")
    assert (s.debug, src["debug"]) == (True, "values file a.yaml")
    assert src["tunnel-protocol"] == "default"


def test_set_string_keeps_a_numeric_looking_name() -> None:
    assert resolve(set_strings=["cluster.name=0123"]).settings.cluster_name == "0123"


def test_extra_config_overrides_rows() -> None:
    resolved = resolve(sets=["extraConfig.bpf-lb-algorithm=maglev"])
    assert resolved.settings.bpf_lb_algorithm is LBAlgorithm.MAGLEV
    assert resolved.sources["bpf-lb-algorithm"] == "--set"


def test_hubble_metrics_space_joined_with_port() -> None:
    cm = resolve(
        sets=["hubble.metrics.enabled={dns:query;ignoreAAAA,drop,tcp,flow}"]
    ).as_configmap()
    assert cm["hubble-metrics"] == "dns:query;ignoreAAAA drop tcp flow"
    assert cm["hubble-metrics-server"] == ":9965"


def test_unknown_paths_and_keys_suggest_the_closest() -> None:
    with pytest.raises(ConfigErrors) as err:
        resolve(
            values_files=[("v.yaml", {"loadBalancer": {"algorithim": "maglev"}})],
            sets=["routingMod=native"],
            configmap=("cm", {"tunnel-protocl": "vxlan"}),
        )
    lines = err.value.lines()
    assert lines == [
        "values file v.yaml: loadBalancer.algorithim: unknown Helm value (set to 'maglev') "
        '(did you mean "loadBalancer.algorithm"?)',
        "--set: routingMod: unknown Helm value (set to 'native') (did you mean \"routingMode\"?)",
        "configmap cm: tunnel-protocl: unknown ConfigMap key (value 'vxlan') "
        '(did you mean "tunnel-protocol"?)',
    ]


def test_scalar_over_a_map_is_refused_but_null_is_allowed() -> None:
    with pytest.raises(ConfigErrors, match="ipam: is a map of values"):
        resolve(sets=["ipam=eni"])
    assert resolve(sets=["ipam=null"]).settings.ipam is IPAMMode.CLUSTER_POOL
