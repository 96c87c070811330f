"""Per-value and cross-key checks: each error names key, value, what is allowed and the source."""

from __future__ import annotations

import pytest

from pylium.core.settings import resolve
from pylium.model.config import ConfigErrors


def _errors(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigErrors) as err:
        resolve(**kwargs)  # type: ignore[arg-type]
    return err.value.lines()


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ["ipam.mode=cluster-pol"],
            '--set: ipam.mode (ipam): invalid value "cluster-pol": allowed: '
            "one of cluster-pool, kubernetes, multi-pool, crd, eni, azure, alibabacloud, "
            'delegated-plugin (did you mean "cluster-pool"?)',
        ),
        (["routingMode=direct"], 'invalid value "direct": allowed: one of tunnel, native'),
        (["tunnelProtocol=gre"], 'invalid value "gre": allowed: one of vxlan, geneve'),
        (["loadBalancer.algorithm=roundrobin"], "allowed: one of random, maglev"),
        (["loadBalancer.mode=dsrr"], 'one of snat, dsr, hybrid (did you mean "dsr"?)'),
        (["loadBalancer.dsrDispatch=gre"], "allowed: one of opt, ipip, geneve"),
        (["policyEnforcementMode=sometimes"], "allowed: one of default, always, never"),
        (
            ["maglev.tableSize=1000"],
            "maglev.tableSize (bpf-lb-maglev-table-size): invalid value "
            '"1000": allowed: one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071',
        ),
        (
            ["maglev.hashSeed=c2hvcnQ="],
            'invalid value "c2hvcnQ=": decodes to 5 bytes; allowed: base64 of exactly 12 bytes',
        ),
        (["maglev.hashSeed=!!!"], "not base64"),
        (["ipam.operator.clusterPoolIPv4PodCIDRList={10.0.0.0/33}"], '"10.0.0.0/33" is not a CIDR'),
        (
            ["ipam.operator.clusterPoolIPv4PodCIDRList={10.0.0.1/8}"],
            'has host bits set (did you mean "10.0.0.0/8"?)',
        ),
        (["ipv4NativeRoutingCIDR=fd00::/8"], "is an IPv6 CIDR; allowed: an IPv4 CIDR"),
        (["nodePort.range=30000"], 'invalid value "30000": malformed range'),
        (["nodePort.range=32767-30000"], "bad bounds"),
        (["ipam.operator.clusterPoolIPv4MaskSize=abc"], "not an integer"),
        (["hubble.eventBufferCapacity=4096"], "must be 2^n-1"),
        (["kubeProxyReplacement=strict"], 'invalid value "strict": allowed: true or false'),
    ],
)
def test_bad_values(sets: list[str], expected: str) -> None:
    lines = _errors(sets=sets)
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("--set: ")


def test_good_enum_and_number_values_pass() -> None:
    s = resolve(
        sets=[
            "maglev.tableSize=65521",
            "maglev.hashSeed=AAAAAAAAAAAAAAAA",
            "nodePort.range=20000-22767",
        ]
    ).settings
    assert s.bpf_lb_maglev_table_size == 65521
    assert (s.node_port_range.min, s.node_port_range.max) == (20000, 22767)
    assert s.to_configmap()["node-port-range"] == "20000,22767"


@pytest.mark.parametrize(
    ("mask", "ok"),
    [(8, True), (24, True), (29, True), (30, True), (31, False), (32, False), (7, False)],
)
def test_cluster_pool_mask_bounds(mask: int, ok: bool) -> None:
    sets = [f"ipam.operator.clusterPoolIPv4MaskSize={mask}"]
    if ok:
        warnings = resolve(sets=sets).warnings
        assert any("/29 or shorter is recommended" in w for w in warnings) == (mask == 30)
    else:
        (line,) = _errors(sets=sets)
        assert line.startswith("--set: cluster-pool-ipv4-mask-size: ")
        assert f'value "{mask}"' in line and "allowed" in line


def test_mask_must_not_be_shorter_than_any_pool() -> None:
    (line,) = _errors(
        sets=[
            "ipam.operator.clusterPoolIPv4PodCIDRList={10.0.0.0/8,192.168.0.0/20}",
            "ipam.operator.clusterPoolIPv4MaskSize=16",
        ]
    )
    assert "must be >= the prefix length of cluster-pool-ipv4-cidr 192.168.0.0/20" in line


def test_native_routing_needs_a_cidr_unless_exempt() -> None:
    (line,) = _errors(sets=["routingMode=native"])
    assert line.startswith('--set: routing-mode: value "native": ipv4-native-routing-cidr')
    for extra in (
        ["ipv4NativeRoutingCIDR=10.0.0.0/8"],
        ["ipam.mode=eni"],
        ["ipam.mode=alibabacloud"],
        ["enableIPv4Masquerade=false"],
        ["ipMasqAgent.enabled=true"],
    ):
        assert resolve(sets=["routingMode=native", *extra]).settings.routing_mode == "native"


def test_native_cidr_not_covering_the_pool_warns() -> None:
    warnings = resolve(sets=["routingMode=native", "ipv4NativeRoutingCIDR=192.168.0.0/16"]).warnings
    assert any("does not contain cluster-pool-ipv4-cidr 10.0.0.0/8" in w for w in warnings)


def test_dsr_with_vxlan_is_an_error() -> None:
    (line,) = _errors(sets=["kubeProxyReplacement=true", "loadBalancer.mode=dsr"])
    assert line.startswith('--set: bpf-lb-mode: value "dsr": with a VXLAN tunnel only snat')
    (line,) = _errors(configmap=("cm", {"bpf-lb-mode": "hybrid"}))
    assert line.startswith('configmap cm: bpf-lb-mode: value "hybrid"')


def test_dsr_in_geneve_tunnel_needs_geneve_dispatch() -> None:
    (line,) = _errors(sets=["tunnelProtocol=geneve", "loadBalancer.mode=dsr"])
    assert "bpf-lb-dsr-dispatch" in line and "requires geneve dispatch" in line
    ok = resolve(
        sets=[
            "tunnelProtocol=geneve",
            "loadBalancer.mode=dsr",
            "loadBalancer.dsrDispatch=geneve",
            "kubeProxyReplacement=true",
        ]
    )
    assert ok.warnings == ()


def test_dsr_natively_routed_is_fine() -> None:
    resolved = resolve(
        sets=[
            "routingMode=native",
            "ipv4NativeRoutingCIDR=10.0.0.0/8",
            "loadBalancer.mode=dsr",
            "kubeProxyReplacement=true",
        ]
    )
    assert resolved.settings.bpf_lb_mode == "dsr"


def test_auto_direct_routes_need_native_routing() -> None:
    (line,) = _errors(sets=["autoDirectNodeRoutes=true"])
    assert "auto-direct-node-routes" in line and "cannot be used with routing-mode tunnel" in line
    (line,) = _errors(
        configmap=(
            "cm",
            {
                "routing-mode": "native",
                "ipv4-native-routing-cidr": "10.0.0.0/8",
                "direct-routing-skip-unreachable": "true",
            },
        )
    )
    assert "requires auto-direct-node-routes: true" in line


def test_all_problems_reported_at_once() -> None:
    lines = _errors(
        values_files=[("v.yaml", {"tunnelProtocol": "gre"})], sets=["maglev.tableSize=7", "nope=1"]
    )
    assert len(lines) == 3
    assert sorted(line.split(":")[0] for line in lines) == ["--set", "--set", "values file v.yaml"]
