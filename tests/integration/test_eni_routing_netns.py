"""Per-ENI routing on a real kernel: in a namespace of its own, a stand-in ENI (eth1, one end
of a veth, in 10.0.2.0/24) and a pod address; the kernel's own route lookup must send the pod's VPC
traffic through eth1 via the subnet router, and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from pylium.adapters.netlink import eniroutes
from pylium.adapters.netlink import netns as nl
from pylium.core.ipam.eni import routing

pytestmark = pytest.mark.root

NS = f"pl-eni{os.getpid() % 100000}"
POD = "10.0.2.44"


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", "-n", NS, *args], check=True, capture_output=True, text=True
    ).stdout


def route_get(dst: str) -> dict[str, str]:
    out = json.loads(ip("-j", "route", "get", dst, "from", POD))
    return dict(out[0])


@pytest.fixture
def ns() -> Iterator[str]:
    nl.create_netns(NS)
    try:
        ip("link", "set", "lo", "up")
        # veth pairs (no dummy module on this kernel), both ends here and up.
        for dev in ("eth1", "lxc1"):
            ip("link", "add", dev, "type", "veth", "peer", "name", f"{dev}p")
            ip("link", "set", f"{dev}p", "up")
            ip("link", "set", dev, "up")
        ip("addr", "add", "10.0.2.10/24", "dev", "eth1")
        ip("addr", "add", f"{POD}/32", "dev", "lxc1")  # the pod's side, holding its address
        yield NS
    finally:
        nl.delete_netns(NS)


def test_pod_traffic_to_the_vpc_leaves_through_its_eni(ns: str) -> None:
    plan = routing.plan_pod(
        pod_ip=POD,
        eni_number=1,
        device="eth1",
        subnet_cidr="10.0.2.0/24",
        vpc_cidrs=["10.0.0.0/16"],
        masquerade=True,
    )
    eniroutes.apply(ns, plan)
    eniroutes.apply(ns, plan)  # idempotent
    assert sorted(eniroutes.rules(ns), key=str) == sorted(plan.rules, key=str)
    via = route_get("10.0.7.7")
    assert via["dev"] == "eth1" and via["gateway"] == "10.0.2.1"
    assert "default via 10.0.2.1 dev eth1" in ip("route", "show", "table", "11")
    # Outside the VPC (masqueraded traffic): the main table, which has no route here.
    with pytest.raises(subprocess.CalledProcessError):
        route_get("8.8.8.8")
    eniroutes.remove(ns, routing.stale(eniroutes.rules(ns), [], pod_prefixes=[f"{POD}/32"]))
    eniroutes.remove(ns, list(plan.rules))  # already gone: harmless
    assert eniroutes.rules(ns) == []
