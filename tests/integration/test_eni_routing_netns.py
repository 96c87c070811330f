"""Per-ENI routing on a real kernel: in a namespace of its own, a stand-in ENI (eth1, one end
of a veth, in 10.0.2.0/24) and a pod address; the kernel's own route lookup must send the pod's VPC
traffic through eth1 via the subnet router, and nothing else. The agent's ENIRouting, run in
that namespace against a CiliumNode in a real store, finds the ENI's device by its MAC, brings
it up, prunes the rules of a pod gone during a restart and masquerades only through
egress-masquerade-interfaces (nftables, wildcards included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


# The agent's ENIRouting works in its own namespace: it runs here in a child entered into NS.
AGENT_SCRIPT = """
import ipaddress, json, sys
from pylium.adapters.netlink import eniroutes
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.agent.eni import ENIRouting
from pylium.model.resource import Resource

store = open_store("local:" + sys.argv[1])
client = ResourceClient(store)
client.put(Resource({
    "apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": "n1"},
    "spec": {"ipam": {"pool": {ip: {"resource": "eni-1"} for ip in ("10.0.2.44", "10.0.2.45")}}},
    "status": {"eni": {"enis": {"eni-1": {
        "id": "eni-1", "mac": sys.argv[2], "number": 1,
        "subnet": {"id": "subnet-2", "cidr": "10.0.2.0/24"},
        "vpc": {"id": "vpc-1", "primary-cidr": "10.0.0.0/16", "cidrs": ["10.0.0.0/16"]},
    }}}},
}))
pods = [ipaddress.IPv4Address("10.0.2.44"), ipaddress.IPv4Address("10.0.2.45")]
first = ENIRouting(client, "n1", masquerade=True, masquerade_interfaces=["eth0", "eth+"])
for pod in pods:
    first.install(pod)
installed = sorted(str(r) for r in eniroutes.rules(None))
first.sync_masquerade([ipaddress.IPv4Network(f"{p}/32") for p in pods])
# A restart while 10.0.2.45's pod was deleted: only 10.0.2.44 is installed again, then pruned.
again = ENIRouting(client, "n1", masquerade=True)
again.install(pods[0])
pruned = sorted(str(r) for r in again.prune())
print(json.dumps({"installed": installed, "pruned": pruned,
                  "left": sorted(str(r) for r in eniroutes.rules(None))}))
store.close()
"""


def test_agent_eni_routing_restart_prunes_and_masquerades(ns: str, tmp_path: Path) -> None:
    mac = json.loads(ip("-j", "link", "show", "eth1"))[0]["address"]
    ip("link", "set", "eth1", "down")  # a just-attached ENI: the agent brings it up
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            AGENT_SCRIPT,
            str(tmp_path / "s.db"),
            mac,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rule = routing.Rule
    kept = [rule(20, 254, dst="10.0.2.44/32"), rule(110, 11, "10.0.2.44/32", "10.0.0.0/16")]
    gone = [rule(20, 254, dst="10.0.2.45/32"), rule(110, 11, "10.0.2.45/32", "10.0.0.0/16")]
    assert result["installed"] == sorted(str(r) for r in kept + gone)
    assert result["pruned"] == sorted(str(r) for r in gone)
    assert result["left"] == sorted(str(r) for r in kept)
    assert "UP" in json.loads(ip("-j", "link", "show", "eth1"))[0]["flags"]
    ruleset = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "table", "ip", "pylium"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'oifname "eth0"' in ruleset and 'oifname "eth*"' in ruleset, ruleset
    assert "10.0.2.44" in ruleset and "10.0.0.0/16" in ruleset and "masquerade" in ruleset
