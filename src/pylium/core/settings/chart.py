"""L2: the Helm chart as data: default values, and the Helm value -> ``cilium-config`` table.

Each :class:`Row` renders one ConfigMap key from the Helm paths it lists, the way
``install/kubernetes/cilium/templates/cilium-configmap.yaml`` does (lists space-joined,
booleans lower-case, keys left out where the chart leaves them out). ``PASSIVE`` lists Helm
values pylium accepts but does not turn into agent keys (they shape upstream's DaemonSet).
``extraConfig`` entries are copied in last, overriding rows, as in the chart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pylium.core.settings import values as v
from pylium.model.config import render_scalar

Values = Mapping[str, Any]

# The subset of upstream values.yaml that feeds the rows below (Cilium 1.17-1.20 defaults).
CHART_DEFAULTS: Mapping[str, Any] = {
    "debug": {"enabled": False},
    "ipam": {
        "mode": "cluster-pool",
        "operator": {
            "clusterPoolIPv4PodCIDRList": ["10.0.0.0/8"],
            "clusterPoolIPv4MaskSize": 24,
            "clusterPoolIPv6PodCIDRList": ["fd00::/104"],
            "clusterPoolIPv6MaskSize": 120,
        },
    },
    "routingMode": "",
    "tunnelProtocol": "",
    "tunnelPort": 0,
    "MTU": 0,
    "labels": "",
    "autoDirectNodeRoutes": False,
    "directRoutingSkipUnreachable": False,
    "ipv4NativeRoutingCIDR": "",
    "ipv6NativeRoutingCIDR": "",
    "kubeProxyReplacement": "false",
    "nodePort": {"bindProtection": True, "autoProtectPortRange": True, "enableHealthCheck": True},
    "bpf": {
        "root": "/sys/fs/bpf",
        "autoMount": {"enabled": True},
        "lbMapMax": 65536,
        "monitorAggregation": "medium",
        "policyMapMax": 16384,
        "lbExternalClusterIP": False,
    },
    "cgroup": {"autoMount": {"enabled": True}, "hostRoot": "/run/cilium/cgroupv2"},
    "cni": {
        "install": True,
        "uninstall": False,
        "exclusive": True,
        "logFile": "/var/run/cilium/cilium-cni.log",
        "customConf": False,
        "confPath": "/etc/cni/net.d",
        "binPath": "/opt/cni/bin",
        "configMapKey": "cni-config",
        "confFileMountPath": "/tmp/cni-configuration",
        "hostConfDirMountPath": "/host/etc/cni/net.d",
        "chainedPlugins": [],
    },
    "policyEnforcementMode": "default",
    "policyAuditMode": False,
    "identityAllocationMode": "crd",
    "cluster": {"name": "default", "id": 0},
    "hostFirewall": {"enabled": False},
    "ipv4": {"enabled": True},
    "ipv6": {"enabled": False},
    "enableIPv6Masquerade": True,
    "endpointRoutes": {"enabled": False},
    "eni": {
        "enabled": False,
        "awsReleaseExcessIPs": False,
        "awsEnablePrefixDelegation": False,
        "ec2APIEndpoint": "",
        "eniTags": {},
        "subnetIDsFilter": [],
        "subnetTagsFilter": [],
        "instanceTagsFilter": [],
    },
    "gke": {"enabled": False},
    "azure": {"enabled": False},
    "alibabacloud": {"enabled": False},
    "egressMasqueradeInterfaces": "",
    "ipMasqAgent": {"enabled": False},
    "healthChecking": True,
    "healthPort": 9879,
    "endpointHealthChecking": {"enabled": True},
    "l7Proxy": True,
    "hubble": {
        "enabled": True,
        "listenAddress": ":4244",
        "socketPath": "/var/run/cilium/hubble.sock",
        "metrics": {"port": 9965, "enableOpenMetrics": False},
    },
    "prometheus": {"enabled": False, "port": 9962},
    "operator": {
        "identityGCInterval": "15m0s",
        "identityHeartbeatTimeout": "30m0s",
        "prometheus": {"enabled": True, "port": 9963},
    },
    "conntrackGCInterval": "",
    "conntrackGCMaxInterval": "",
    "k8sServiceHost": "",
    "k8sServicePort": "",
    "extraConfig": {},
}

# Helm values accepted but not rendered into cilium-config, with the reason shown as a warning.
PASSIVE: Mapping[str, str] = {
    "k8sServiceHost": "the agent's KUBERNETES_SERVICE_HOST; pylium agents talk to the store",
    "k8sServicePort": "the agent's KUBERNETES_SERVICE_PORT; pylium agents talk to the store",
    "cni.confPath": "a hostPath mount of the upstream DaemonSet",
    "hubble.relay.enabled": "deploys Hubble Relay; run it with pylium's hubble relay",
    "hubble.ui.enabled": "deploys the Hubble UI; run it with pylium's hubble ui",
}

# Helm values that shape the deployment rather than cilium-config: the lab reads them.
DEPLOYMENT_VALUES: Mapping[str, str] = {
    "operator.replicas": "how many operators run (one leads); upstream's default is 2, the lab's 1",
}

# Helm paths whose value is a free-form map: any key below them is accepted.
FREE_MAPS = ("extraConfig", "eni.eniTags", "eni.gcTags")


@dataclass(frozen=True, slots=True)
class Row:
    """One ConfigMap key rendered from the values at ``paths``; ``conditions`` only decide
    whether (or in which form) it is rendered. ``render`` returns None to leave it out."""

    key: str
    paths: tuple[str, ...]
    render: Callable[[Values], str | None]
    conditions: tuple[str, ...] = ()


def _plain(path: str) -> Callable[[Values], str | None]:
    def render(values: Values) -> str | None:
        value = v.get(values, path)
        return None if value is None else render_scalar(value)

    return render


def _truthy(path: str) -> Callable[[Values], str | None]:
    """``{{- if .Values.x }}``: rendered only when set to something non-empty/non-zero."""

    def render(values: Values) -> str | None:
        value = v.get(values, path)
        return render_scalar(value) if value else None

    return render


def _joined(path: str, sep: str) -> Callable[[Values], str | None]:
    """``join sep``; a plain string counts as a one-element list, as in sprig."""

    def render(values: Values) -> str | None:
        value = v.get(values, path)
        if value is None or value == []:
            return None
        items = value if isinstance(value, list) else [value]
        return sep.join(render_scalar(i) for i in items)

    return render


def _json(path: str) -> Callable[[Values], str | None]:
    def render(values: Values) -> str | None:
        value = v.get(values, path)
        if not value:
            return None
        if isinstance(value, Mapping):
            return json.dumps({str(k): render_scalar(x) for k, x in value.items()})
        return render_scalar(value)

    return render


def row(
    key: str, path: str, render: Callable[[str], Callable[[Values], str | None]] = _plain
) -> Row:
    return Row(key, (path,), render(path))


def _on(values: Values, path: str) -> bool:
    return bool(v.get(values, path))


def _ipam(values: Values) -> str:
    if _on(values, "eni.enabled"):
        return "eni"
    if _on(values, "gke.enabled"):  # GKE allocates PodCIDRs: kubernetes host-scope IPAM
        return "kubernetes"
    return render_scalar(v.get(values, "ipam.mode") or "cluster-pool")


def _cluster_pool(path: str, family: str) -> Callable[[Values], str | None]:
    inner = _joined(path, " ") if path.endswith("List") else _plain(path)

    def render(values: Values) -> str | None:
        if _ipam(values) != "cluster-pool" or not _on(values, f"{family}.enabled"):
            return None
        return inner(values)

    return render


def _routing_mode(values: Values) -> str:
    cloud = _on(values, "eni.enabled") or _on(values, "gke.enabled")
    return render_scalar(v.get(values, "routingMode") or ("native" if cloud else "tunnel"))


def _kpr(values: Values) -> str:
    value = v.get(values, "kubeProxyReplacement")
    return "false" if value is None or value == "" else render_scalar(value)


def _endpoint_routes(values: Values) -> str | None:
    forced = any(_on(values, f"{p}.enabled") for p in ("gke", "eni", "azure", "alibabacloud"))
    return "true" if forced or _on(values, "endpointRoutes.enabled") else None


def _auto_create_node(values: Values) -> str | None:
    cloud = any(_on(values, f"{p}.enabled") for p in ("eni", "azure", "alibabacloud"))
    return "true" if cloud else None


def _ipv4_masquerade(values: Values) -> str:
    value = v.get(values, "enableIPv4Masquerade")
    if value is None:  # since 1.18 the chart turns it off for ENI
        return "false" if _on(values, "eni.enabled") else "true"
    return render_scalar(value)


def _writes_cni_conf(values: Values) -> bool:
    return not _on(values, "cni.customConf") and _on(values, "cni.install")


def _write_cni_conf(values: Values) -> str:
    legacy = _on(values, "cni.configMap") and _on(values, "cni.customConf")
    if legacy or _writes_cni_conf(values):
        return f"{render_scalar(v.get(values, 'cni.hostConfDirMountPath'))}/05-cilium.conflist"
    return ""  # the agent's own default: write nothing


def _cni_exclusive(values: Values) -> str:
    if _writes_cni_conf(values):
        return render_scalar(v.get(values, "cni.exclusive"))
    return "false"  # left out by the chart: the agent flag's default


def _cni_log_file(values: Values) -> str | None:
    return render_scalar(v.get(values, "cni.logFile")) if _writes_cni_conf(values) else None


def _read_cni_conf(values: Values) -> str | None:
    if _on(values, "cni.configMap"):
        mount = render_scalar(v.get(values, "cni.confFileMountPath"))
        return f"{mount}/{render_scalar(v.get(values, 'cni.configMapKey'))}"
    return _truthy("cni.readCniConf")(values)


def _chaining_mode(values: Values) -> str:
    mode = v.get(values, "cni.chainingMode")
    if mode is not None:
        return render_scalar(mode)
    return "generic-veth" if v.get(values, "cni.chainingTarget") is not None else "none"


def _endpoint_health(values: Values) -> str:
    ok = _on(values, "endpointHealthChecking.enabled") and _chaining_mode(values) in (
        "none",
        "portmap",
    )
    return "true" if ok else "false"


def _hubble_metrics_server(values: Values) -> str | None:
    if not v.get(values, "hubble.metrics.enabled"):
        return None
    return f":{render_scalar(v.get(values, 'hubble.metrics.port'))}"


def _hubble_open_metrics(values: Values) -> str | None:
    if not v.get(values, "hubble.metrics.enabled"):
        return None
    return render_scalar(v.get(values, "hubble.metrics.enableOpenMetrics"))


def _serve_addr(enabled: str, port: str, off: str | None) -> Callable[[Values], str | None]:
    """``{{- if .Values.<enabled> }} ...: ":{{ .Values.<port> }}"``; ``off`` when disabled."""

    def render(values: Values) -> str | None:
        if not _on(values, enabled):
            return off
        return f":{render_scalar(v.get(values, port))}"

    return render


def _policy_mode(values: Values) -> str | None:
    value = v.get(values, "policyEnforcementMode")
    return None if value is None else render_scalar(value).lower()


def _eni_only(inner: Callable[[Values], str | None]) -> Callable[[Values], str | None]:
    return lambda values: inner(values) if _on(values, "eni.enabled") else None


def _azure_only(path: str) -> Callable[[Values], str | None]:
    inner = _truthy(path)
    return lambda values: inner(values) if _on(values, "azure.enabled") else None


ROWS: tuple[Row, ...] = (
    # IPAM
    Row("ipam", ("ipam.mode", "eni.enabled", "gke.enabled"), _ipam),
    Row(
        "cluster-pool-ipv4-cidr",
        ("ipam.operator.clusterPoolIPv4PodCIDRList",),
        _cluster_pool("ipam.operator.clusterPoolIPv4PodCIDRList", "ipv4"),
        ("ipam.mode", "eni.enabled", "gke.enabled", "ipv4.enabled"),
    ),
    Row(
        "cluster-pool-ipv4-mask-size",
        ("ipam.operator.clusterPoolIPv4MaskSize",),
        _cluster_pool("ipam.operator.clusterPoolIPv4MaskSize", "ipv4"),
        ("ipam.mode", "eni.enabled", "gke.enabled", "ipv4.enabled"),
    ),
    Row(
        "cluster-pool-ipv6-cidr",
        ("ipam.operator.clusterPoolIPv6PodCIDRList",),
        _cluster_pool("ipam.operator.clusterPoolIPv6PodCIDRList", "ipv6"),
        ("ipam.mode", "eni.enabled", "gke.enabled", "ipv6.enabled"),
    ),
    Row(
        "cluster-pool-ipv6-mask-size",
        ("ipam.operator.clusterPoolIPv6MaskSize",),
        _cluster_pool("ipam.operator.clusterPoolIPv6MaskSize", "ipv6"),
        ("ipam.mode", "eni.enabled", "gke.enabled", "ipv6.enabled"),
    ),
    row("ipam-pre-allocate", "ipam.nodeSpec.ipamPreAllocate"),
    row("ipam-min-allocate", "ipam.nodeSpec.ipamMinAllocate"),
    row("ipam-max-allocate", "ipam.nodeSpec.ipamMaxAllocate"),
    Row("auto-create-cilium-node-resource", ("eni.enabled", "azure.enabled"), _auto_create_node),
    # Routing
    Row("routing-mode", ("routingMode", "eni.enabled", "gke.enabled"), _routing_mode),
    Row(
        "tunnel-protocol",
        ("tunnelProtocol",),
        lambda values: render_scalar(v.get(values, "tunnelProtocol") or "vxlan"),
    ),
    row("tunnel-port", "tunnelPort", _truthy),
    row("underlay-protocol", "underlayProtocol", _truthy),
    row("ipv4-native-routing-cidr", "ipv4NativeRoutingCIDR", _truthy),
    row("ipv6-native-routing-cidr", "ipv6NativeRoutingCIDR", _truthy),
    row("auto-direct-node-routes", "autoDirectNodeRoutes"),
    row("direct-routing-skip-unreachable", "directRoutingSkipUnreachable"),
    Row(
        "enable-endpoint-routes",
        ("endpointRoutes.enabled", "eni.enabled", "gke.enabled", "azure.enabled"),
        _endpoint_routes,
    ),
    row("mtu", "MTU", _truthy),
    Row("devices", ("devices",), _joined("devices", " ")),
    row("labels", "labels", _truthy),
    row("direct-routing-device", "nodePort.directRoutingDevice"),
    # Masquerading
    Row("enable-ipv4-masquerade", ("enableIPv4Masquerade", "eni.enabled"), _ipv4_masquerade),
    row("enable-ipv6-masquerade", "enableIPv6Masquerade"),
    row("enable-bpf-masquerade", "bpf.masquerade"),
    row("enable-host-legacy-routing", "bpf.hostLegacyRouting"),
    row("enable-ip-masq-agent", "ipMasqAgent.enabled"),
    row("egress-masquerade-interfaces", "egressMasqueradeInterfaces"),
    # Load-balancing
    Row("kube-proxy-replacement", ("kubeProxyReplacement",), _kpr),
    row("bpf-lb-sock", "socketLB.enabled"),
    row("bpf-lb-sock-hostns-only", "socketLB.hostNamespaceOnly"),
    row("bpf-lb-algorithm", "loadBalancer.algorithm"),
    row("bpf-lb-mode", "loadBalancer.mode"),
    row("bpf-lb-dsr-dispatch", "loadBalancer.dsrDispatch"),
    row("bpf-lb-acceleration", "loadBalancer.acceleration"),
    row("enable-service-topology", "loadBalancer.serviceTopology"),
    row("bpf-lb-maglev-table-size", "maglev.tableSize"),
    row("bpf-lb-maglev-hash-seed", "maglev.hashSeed"),
    row("bpf-lb-map-max", "bpf.lbMapMax"),
    row("monitor-aggregation", "bpf.monitorAggregation"),
    row("bpf-lb-external-clusterip", "bpf.lbExternalClusterIP"),
    row("conntrack-gc-interval", "conntrackGCInterval", _truthy),
    row("conntrack-gc-max-interval", "conntrackGCMaxInterval", _truthy),
    row("bpf-lb-algorithm-annotation", "bpf.lbAlgorithmAnnotation"),
    row("bpf-lb-mode-annotation", "bpf.lbModeAnnotation"),
    row("node-port-range", "nodePort.range"),
    row("enable-health-check-nodeport", "nodePort.enableHealthCheck"),
    row("node-port-bind-protection", "nodePort.bindProtection"),
    row("service-no-backend-response", "serviceNoBackendResponse", _truthy),
    # CNI
    Row(
        "write-cni-conf-when-ready",
        ("cni.install", "cni.customConf", "cni.configMap", "cni.hostConfDirMountPath"),
        _write_cni_conf,
    ),
    Row("cni-exclusive", ("cni.exclusive",), _cni_exclusive, ("cni.install", "cni.customConf")),
    Row("cni-log-file", ("cni.logFile",), _cni_log_file, ("cni.install", "cni.customConf")),
    Row("cni-chaining-mode", ("cni.chainingMode", "cni.chainingTarget"), _chaining_mode),
    row("cni-chaining-target", "cni.chainingTarget"),
    row("cni-external-routing", "cni.externalRouting"),
    row("custom-cni-conf", "cni.customConf"),
    Row(
        "read-cni-conf",
        ("cni.readCniConf", "cni.configMap", "cni.configMapKey", "cni.confFileMountPath"),
        _read_cni_conf,
    ),
    row("cni-uninstall", "cni.uninstall", _truthy),
    # pylium keys: upstream's install-cni-binaries init container and cni.binPath mount
    row("cni-install", "cni.install"),
    row("cni-bin-path", "cni.binPath"),
    Row("cni-chained-plugins", ("cni.chainedPlugins",), _joined("cni.chainedPlugins", " ")),
    # Policy, identity, cluster
    Row("enable-policy", ("policyEnforcementMode",), _policy_mode),
    row("policy-audit-mode", "policyAuditMode"),
    row("enable-host-firewall", "hostFirewall.enabled", _truthy),
    row("enable-l7-proxy", "l7Proxy"),
    row("bpf-policy-map-max", "bpf.policyMapMax"),
    row("identity-allocation-mode", "identityAllocationMode"),
    row("cluster-name", "cluster.name"),
    row("cluster-id", "cluster.id"),
    row("enable-ipv4", "ipv4.enabled"),
    row("enable-ipv6", "ipv6.enabled"),
    # Hubble
    row("enable-hubble", "hubble.enabled"),
    row("hubble-listen-address", "hubble.listenAddress"),
    row("hubble-socket-path", "hubble.socketPath"),
    row("hubble-event-buffer-capacity", "hubble.eventBufferCapacity"),
    Row(
        "hubble-metrics-server",
        ("hubble.metrics.enabled", "hubble.metrics.port"),
        _hubble_metrics_server,
    ),
    Row("hubble-metrics", ("hubble.metrics.enabled",), _joined("hubble.metrics.enabled", " ")),
    Row(
        "enable-hubble-open-metrics",
        ("hubble.metrics.enableOpenMetrics",),
        _hubble_open_metrics,
        ("hubble.metrics.enabled",),
    ),
    # Metrics: the agent's cilium_* (off by default), the operator's cilium_operator_*; the
    # operator's is rendered empty when disabled (upstream drops its --enable-metrics flag).
    Row(
        "prometheus-serve-addr",
        ("prometheus.enabled", "prometheus.port"),
        _serve_addr("prometheus.enabled", "prometheus.port", None),
    ),
    Row(
        "operator-prometheus-serve-addr",
        ("operator.prometheus.enabled", "operator.prometheus.port"),
        _serve_addr("operator.prometheus.enabled", "operator.prometheus.port", ""),
    ),
    # Health and misc
    row("enable-health-checking", "healthChecking"),
    Row(
        "enable-endpoint-health-checking",
        ("endpointHealthChecking.enabled",),
        _endpoint_health,
        ("cni.chainingMode", "cni.chainingTarget"),
    ),
    row("agent-health-port", "healthPort"),
    row("cluster-health-port", "clusterHealthPort"),
    row("debug", "debug.enabled"),
    row("bpf-root", "bpf.root"),
    row("cgroup-root", "cgroup.hostRoot"),
    row("bpf-auto-mount", "bpf.autoMount.enabled"),
    row("cgroup-auto-mount", "cgroup.autoMount.enabled"),
    # Operator
    Row("eni-tags", ("eni.eniTags",), _eni_only(_json("eni.eniTags")), ("eni.enabled",)),
    Row("eni-gc-tags", ("eni.gcTags",), _json("eni.gcTags")),
    row("eni-gc-interval", "eni.gcInterval", _truthy),
    Row(
        "aws-release-excess-ips",
        ("eni.awsReleaseExcessIPs",),
        _eni_only(_truthy("eni.awsReleaseExcessIPs")),
        ("eni.enabled",),
    ),
    Row(
        "aws-enable-prefix-delegation",
        ("eni.awsEnablePrefixDelegation",),
        _eni_only(_truthy("eni.awsEnablePrefixDelegation")),
        ("eni.enabled",),
    ),
    Row(
        "ec2-api-endpoint",
        ("eni.ec2APIEndpoint",),
        _eni_only(_plain("eni.ec2APIEndpoint")),
        ("eni.enabled",),
    ),
    Row(
        "subnet-ids-filter",
        ("eni.subnetIDsFilter",),
        _eni_only(_joined("eni.subnetIDsFilter", " ")),
        ("eni.enabled",),
    ),
    Row(
        "subnet-tags-filter",
        ("eni.subnetTagsFilter",),
        _eni_only(_joined("eni.subnetTagsFilter", ",")),
        ("eni.enabled",),
    ),
    Row(
        "instance-tags-filter",
        ("eni.instanceTagsFilter",),
        _eni_only(_joined("eni.instanceTagsFilter", ",")),
        ("eni.enabled",),
    ),
    Row(
        "azure-subscription-id",
        ("azure.subscriptionID",),
        _azure_only("azure.subscriptionID"),
        ("azure.enabled",),
    ),
    Row(
        "azure-resource-group",
        ("azure.resourceGroup",),
        _azure_only("azure.resourceGroup"),
        ("azure.enabled",),
    ),
    Row(
        "azure-user-assigned-identity-id",
        ("azure.userAssignedIdentityID",),
        _azure_only("azure.userAssignedIdentityID"),
        ("azure.enabled",),
    ),
    row("identity-gc-interval", "operator.identityGCInterval"),
    row("identity-heartbeat-timeout", "operator.identityHeartbeatTimeout"),
)


def required_keys(values: Values) -> dict[str, tuple[str, str]]:
    """Keys the chart refuses to render without (its ``fail`` calls): key -> (the Helm value
    that requires it, why). GKE routes pod CIDRs natively, so it must be told which
    destinations need no masquerading."""
    out: dict[str, tuple[str, str]] = {}
    if _on(values, "gke.enabled"):
        out["ipv4-native-routing-cidr"] = (
            "gke.enabled",
            (
                "ipv4-native-routing-cidr must be set when gke.enabled is true (Helm "
                "ipv4NativeRoutingCIDR: the cluster's pod CIDR range, routed natively by GCP "
                "alias IPs and not masqueraded)"
            ),
        )
    return out


def known_paths() -> frozenset[str]:
    """Every Helm value path pylium accepts (leaves; lists and FREE_MAPS count as leaves)."""
    out = {p for r in ROWS for p in (*r.paths, *r.conditions)}
    out.update(PASSIVE)
    out.update(DEPLOYMENT_VALUES)
    out.update(v.format_path(p) for p, _ in v.leaf_paths(CHART_DEFAULTS))
    out.update(FREE_MAPS)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered key: its string value, the Helm paths it came from and those that decided
    whether it was rendered."""

    value: str
    paths: tuple[str, ...]
    conditions: tuple[str, ...] = ()


def render(values: Values) -> dict[str, Rendered]:
    """The ``cilium-config`` data the chart would render from fully merged values."""
    out: dict[str, Rendered] = {}
    for r in ROWS:
        value = r.render(values)
        if value is not None:
            out[r.key] = Rendered(value, r.paths, r.conditions)
    extra = v.get(values, "extraConfig")
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            if value is not None:
                out[str(key)] = Rendered(render_scalar(value), (f"extraConfig.{key}",))
    return out
