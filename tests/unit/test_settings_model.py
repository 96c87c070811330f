"""AgentSettings/OperatorSettings: ConfigMap parsing, rendering and per-value checks."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
from ipaddress import IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from pylium.model import config
from pylium.model.config import (
    MAGLEV_TABLE_SIZES,
    AgentSettings,
    DSRDispatch,
    LBMode,
    NodePortRange,
    OperatorSettings,
    RoutingMode,
    TunnelProtocol,
)


def test_every_field_has_a_key_and_an_attribute_docstring() -> None:
    tree = ast.parse(inspect.getsource(config))
    documented: set[str] = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for stmt, nxt in itertools.pairwise(cls.body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                documented.add(stmt.target.id)
    for cls in (AgentSettings, OperatorSettings):
        for fld in dataclasses.fields(cls):
            assert "cilium-config-key" in fld.metadata, fld.name
            assert fld.name in documented, fld.name


def test_tunnel_port_zero_means_the_protocol_port() -> None:
    assert AgentSettings().effective_tunnel_port == 8472
    assert AgentSettings(tunnel_protocol=TunnelProtocol.GENEVE).effective_tunnel_port == 6081
    assert AgentSettings(tunnel_port=9000).effective_tunnel_port == 9000


def test_from_configmap_ignores_the_other_components_keys() -> None:
    data = {"aws-release-excess-ips": "true", "debug": "true"}
    assert AgentSettings.from_configmap(data).debug
    assert OperatorSettings.from_configmap(data).aws_release_excess_ips


def test_go_booleans_and_durations() -> None:
    s = OperatorSettings.from_configmap(
        {"aws-release-excess-ips": "T", "identity-gc-interval": "1h30m"}
    )
    assert s.aws_release_excess_ips
    assert s.identity_gc_interval.total_seconds() == 5400
    assert s.to_configmap()["identity-gc-interval"] == "1h30m0s"


agent_settings = st.builds(
    AgentSettings,
    routing_mode=st.sampled_from(RoutingMode),
    tunnel_protocol=st.sampled_from(TunnelProtocol),
    tunnel_port=st.integers(0, 65535),
    bpf_lb_mode=st.sampled_from(LBMode),
    bpf_lb_dsr_dispatch=st.sampled_from(DSRDispatch),
    bpf_lb_maglev_table_size=st.sampled_from(MAGLEV_TABLE_SIZES),
    cluster_pool_ipv4_cidr=st.lists(
        st.builds(
            lambda a, p: IPv4Network((a, p), strict=False),
            st.integers(0, 2**32 - 1),
            st.integers(0, 32),
        ),
        max_size=3,
    ).map(tuple),
    cluster_pool_ipv4_mask_size=st.integers(1, 32),
    node_port_range=st.builds(
        lambda a, b: NodePortRange(min=a, max=a + b), st.integers(1, 30000), st.integers(1, 35000)
    ),
    hubble_metrics=st.lists(
        st.sampled_from(["dns:query;ignoreAAAA", "drop", "tcp", "flow"]), max_size=4
    ).map(tuple),
    debug=st.booleans(),
    cluster_name=st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=10),
)


@given(agent_settings)
def test_configmap_round_trip(settings: AgentSettings) -> None:
    assert AgentSettings.from_configmap(settings.to_configmap()) == settings
