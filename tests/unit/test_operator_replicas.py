"""Operator replicas and nodes joining a lab, as pure rules: the status counts (desired from
``operator.replicas``, ready from the registered replicas, a warning when a standby is
missing), the replica bounds, and where an added node goes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pylium.base.errors import LabError
from pylium.core.status import ClusterStatus, cluster_status, render_cluster_status
from pylium.lab.plan import check_operator_replicas, plan_added_node


def status(leader: str, operators: list[str], replicas: int) -> ClusterStatus:
    return cluster_status(
        nodes=["n1"],
        cilium_nodes=["n1"],
        heartbeats=["n1"],
        leader=leader,
        pods=[],
        endpoints=[],
        health_reports={},
        version="0.1.0",
        operators=operators,
        operator_replicas=replicas,
    )


def test_two_replicas_both_up_are_ready() -> None:
    st = status("lab-operator", ["lab-operator", "lab-operator-2"], 2)
    assert st.operator.cells() == "Desired: 2, Ready: 2/2, Available: 2/2"
    assert st.ready and not st.warnings
    assert "cilium-operator    Running: 2" in "\n".join(render_cluster_status(st))


def test_a_missing_standby_is_a_warning_naming_the_leader() -> None:
    st = status("lab-operator-2", ["lab-operator-2"], 2)
    assert st.operator.cells() == ("Desired: 2, Ready: 1/2, Available: 1/2, Unavailable: 1/2")
    assert not st.ready
    (warning,) = st.warnings
    assert "1/2 operator replicas running (leader lab-operator-2)" in warning.message


def test_no_leader_is_an_error_and_counts_nothing_ready() -> None:
    st = status("", ["lab-operator"], 2)
    assert st.operator.ready == 0
    assert [p.component for p in st.errors] == ["cilium-operator"]


def test_a_leader_without_presence_keys_counts_as_one() -> None:
    st = status("old-operator", [], 1)
    assert st.operator.cells() == "Desired: 1, Ready: 1/1, Available: 1/1"


@pytest.mark.parametrize("replicas", [0, 6, -1])
def test_replica_bounds(replicas: int) -> None:
    with pytest.raises(LabError, match="operator replicas"):
        check_operator_replicas(replicas)


def test_an_added_node_takes_the_first_free_address() -> None:
    subnet = ipaddress.IPv4Network("192.168.250.0/24")
    taken = [
        ipaddress.IPv4Interface("192.168.250.11/24"),
        ipaddress.IPv4Interface("192.168.250.13/24"),
    ]
    plan = plan_added_node("lab", Path("/s"), subnet, "n4", taken, ["n1", "n3"])
    assert plan.address == ipaddress.IPv4Interface("192.168.250.12/24")
    assert (plan.netns, plan.fabric_port, plan.state_dir) == ("pl-lab-n4", "n4", Path("/s/n4"))
    with pytest.raises(LabError, match="already has a node"):
        plan_added_node("lab", Path("/s"), subnet, "n1", taken, ["n1", "n3"])
    with pytest.raises(LabError, match="node name"):
        plan_added_node("lab", Path("/s"), subnet, "N-1", taken, ["n1"])
