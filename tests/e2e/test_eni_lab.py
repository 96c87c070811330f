"""AWS ENI IPAM and routing in a lab: EC2 is a real moto server, each node an instance whose
ENIs (attached by the operator) appear in the node as eth<k>, the fabric the VPC router.

One lab (masquerading on, through eth0 only) proves: pods on two nodes get addresses of their
node's ENIs as EC2 reports them; each pod has ``to <pod> lookup main`` and ``from <pod> to
<VPC CIDR> lookup 10+<ENI index>`` rules, its /32 endpoint route, and the ENI's table holds the
default route via the subnet router; pods reach each other over TCP through the ENIs with
their own addresses, and the world beyond the VPC with the node's; the operator assigns more
ENI addresses as pods use them; an agent restart keeps every rule exactly once and the traffic
flowing; a deleted pod's rules go and its IP is free in the pool again."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
from typing import Any

import pytest

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.lab import cluster
from pylium.lab import vpc as labvpc

from .conftest import FETCH, HTTP_SERVER, LabHandle, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.moto, pytest.mark.timeout(1500)]

OUTSIDE = "198.51.100.10"
"""An address beyond the VPC (on the fabric router): reached masqueraded."""


def ip_json(netns: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "-j", "-n", netns, *args], capture_output=True, text=True, check=True
    ).stdout
    return list(json.loads(out or "[]"))


def _prefix(rule: dict[str, Any], which: str) -> str:
    """``ip -j rule``'s ``src``/``dst`` with its length unless a host (/32) or ``all``."""
    length = rule.get(f"{which}len", 32)
    return str(rule[which]) if length == 32 else f"{rule[which]}/{length}"


def pod_rules(netns: str, pod_ip: str) -> list[tuple[int, str, str, str]]:
    """(priority, from, to, table) of the rules naming the pod."""
    out = []
    for rule in ip_json(netns, "rule"):
        src, dst = _prefix(rule, "src"), _prefix(rule, "dst") if "dst" in rule else "all"
        if pod_ip in (src, dst):
            out.append((int(rule["priority"]), src, dst, str(rule["table"])))
    return sorted(out)


def eni_addresses(ec2: Any, instance: str) -> dict[str, tuple[str, int]]:
    """What EC2 says: every address of the instance's ENIs -> (ENI id, device index)."""
    enis = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance]}]
    )["NetworkInterfaces"]
    return {
        p["PrivateIpAddress"]: (e["NetworkInterfaceId"], int(e["Attachment"]["DeviceIndex"]))
        for e in enis
        for p in e["PrivateIpAddresses"]
    }


def tx_packets(netns: str, device: str) -> int:
    return int(ip_json(netns, "-s", "link", "show", device)[0]["stats64"]["tx"]["packets"])


def fetch(lab: LabHandle, pod: str, ip: str) -> str:
    """HTTP from the pod's namespace (a plain client: no service, so no cgroup needed)."""
    pod_netns = lab.state["pods"][f"default/{pod}"]["netns"]
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{pod_netns}", "--", "python3", "-c", FETCH, ip, "10"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.strip()


def cilium_node(lab: LabHandle, node: str) -> dict[str, Any]:
    store = open_store(lab.store_url)
    try:
        found = ResourceClient(store).get("CiliumNode", node)
        assert found is not None
        return dict(found.body)
    finally:
        store.close()


def test_pods_get_eni_ips_and_reach_each_other(
    lab: LabHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pods are run through the lab's API in this process: on a loaded machine every CLI
    # start costs tens of seconds.
    monkeypatch.setenv("PYLIUM_HOME", str(lab.cli.home))

    def run_pod(pod: str, node: str, *command: str) -> str:
        return cluster.add_pod(lab.name, node, pod, command=command)["ip"]

    lab.up(
        "--nodes",
        "2",
        "--ipam",
        "eni",
        "--set",
        "ipam.nodeSpec.ipamPreAllocate=4",
        "--set",
        "enableIPv4Masquerade=true",
        "--set",
        "egressMasqueradeInterfaces=eth0",
    )
    vpc = labvpc.LabVPC.load(lab.cli.home / "labs" / lab.name)
    assert vpc is not None
    ec2 = labvpc.ec2_client(vpc.endpoint)
    pods_subnet = ipaddress.ip_network(vpc.pods_cidr)
    router = str(pods_subnet[1])
    netns = {n: info["netns"] for n, info in lab.nodes.items()}
    instance = {n: info["instance-id"] for n, info in vpc.nodes.items()}
    assert set(instance) == {"n1", "n2"}
    fab = vpc.fabric_netns
    subprocess.run(["ip", "-n", fab, "addr", "add", f"{OUTSIDE}/32", "dev", "lo"], check=True)
    outside = subprocess.Popen(
        ["ip", "netns", "exec", fab, *HTTP_SERVER[:3], "--bind", OUTSIDE, "8080"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        before_n1 = set(eni_addresses(ec2, instance["n1"]))
        a = run_pod("a", "n1", *HTTP_SERVER)
        b = run_pod("b", "n2", *HTTP_SERVER)

        # Addresses of the node's own ENIs, as EC2 reports them: an attached ENI (index >= 1,
        # first-interface-index 1) in the pods subnet, which the node has as eth<index>.
        where: dict[str, tuple[str, int]] = {}
        for pod_ip, node in ((a, "n1"), (b, "n2")):
            held = eni_addresses(ec2, instance[node])
            assert pod_ip in held, f"{pod_ip} is not an address of {node}'s ENIs: {held}"
            where[pod_ip] = held[pod_ip]
            assert where[pod_ip][1] >= 1 and ipaddress.ip_address(pod_ip) in pods_subnet
            eni = ec2.describe_network_interfaces(NetworkInterfaceIds=[held[pod_ip][0]])[
                "NetworkInterfaces"
            ][0]
            macs = {link["ifname"]: link["address"] for link in ip_json(netns[node], "link")}
            assert macs[f"eth{where[pod_ip][1]}"] == eni["MacAddress"]

        # Routing as upstream's ENI mode: rules, the ENI's table, the endpoint route.
        index = where[a][1]
        table = str(10 + index)
        vpc_cidrs = [lab.state["subnet"], vpc.pods_cidr]
        assert pod_rules(netns["n1"], a) == sorted(
            [(20, "all", a, "main")] + [(110, a, cidr, table) for cidr in vpc_cidrs]
        )
        routes = {
            (r["dst"], r.get("gateway", ""), r["dev"])
            for r in ip_json(netns["n1"], "route", "show", "table", table)
        }
        assert routes == {("default", router, f"eth{index}"), (router, "", f"eth{index}")}
        main = ip_json(netns["n1"], "route", "show", "table", "main")
        assert any(r["dst"] == a and str(r["dev"]).startswith("lxc") for r in main), main

        # TCP pod to pod, both ways, out of the pod's ENI (not eth0) with the pod's address.
        sent = tx_packets(netns["n1"], f"eth{index}")
        assert fetch(lab, "a", b) == "200"
        assert tx_packets(netns["n1"], f"eth{index}") > sent
        assert fetch(lab, "b", a) == "200"
        b_log = (lab.cli.home / "labs" / lab.name / "pods" / "default_b.log").read_text()
        assert f"{a} - -" in b_log, b_log
        # Beyond the VPC: main table, eth0, masqueraded to the node's address.
        assert fetch(lab, "a", OUTSIDE) == "200"
        n1_ip = lab.nodes["n1"]["ip"]

        # The operator keeps pre-allocate (4) free: pods using addresses make it assign more.
        for i in range(3):
            run_pod(f"c{i}", "n1")

        def topped_up() -> bool:
            spec = cilium_node(lab, "n1")
            pool = spec["spec"]["ipam"]["pool"]
            used = spec.get("status", {}).get("ipam", {}).get("used", {})
            return len(used) >= 5 and len(pool) - len(used) >= 4  # router, a, c0-c2

        wait_for("the operator to top n1 up", topped_up, 300)
        after_n1 = set(eni_addresses(ec2, instance["n1"]))
        assert len(after_n1 - before_n1) >= 4, (before_n1, after_n1)

        # An agent restart (kill -9) restores the rules once each; traffic still flows.
        rules_before = pod_rules(netns["n1"], a)
        cluster.restart(lab.name, "n1", kill=True)
        lab.wait_agent_ready("n1", 300)
        assert pod_rules(netns["n1"], a) == rules_before
        assert fetch(lab, "a", b) == "200"

        # Delete: the pod's rules go, its address is free in the pool again (still EC2's).
        cluster.delete_pod(lab.name, "a")
        assert pod_rules(netns["n1"], a) == []
        n1_after = cilium_node(lab, "n1")
        assert a not in n1_after.get("status", {}).get("ipam", {}).get("used", {})
        assert a in n1_after["spec"]["ipam"]["pool"]
        assert a in eni_addresses(ec2, instance["n1"])
    finally:
        outside.send_signal(signal.SIGTERM)
        _, served = outside.communicate(timeout=30)
    # The server beyond the VPC saw n1's address, not the pod's.
    assert served and f"{n1_ip} - -" in served and f"{a} - -" not in served, served
