"""The lab's pure plan: names, interface-name limits, subnet choice, store location, paths."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pylium.base.errors import LabError
from pylium.lab.plan import IFNAMSIZ, MAX_NODES, plan_lab, pod_cidr_routes


def test_two_node_local_lab() -> None:
    plan = plan_lab(name="demo", nodes=2, store="local", home=Path("/h"))
    assert plan.namespaces == ("pl-demo-fab", "pl-demo-n1", "pl-demo-n2", "pl-demo-cl")
    assert str(plan.client_address) == "192.168.250.253/24"  # the client outside the nodes
    assert [n.name for n in plan.nodes] == ["n1", "n2"]
    assert plan.subnet == ipaddress.IPv4Network("192.168.250.0/24")
    assert str(plan.gateway) == "192.168.250.1/24"
    assert [str(n.address) for n in plan.nodes] == ["192.168.250.11/24", "192.168.250.12/24"]
    assert plan.store_url == "local:/h/labs/demo/store.sqlite"
    assert plan.state_file == Path("/h/labs/demo/lab.json")
    n1 = plan.nodes[0]
    assert n1.state_dir == Path("/h/labs/demo/n1")
    assert n1.socket_path == Path("/h/labs/demo/n1/pylium.sock")
    assert n1.log_path == Path("/h/labs/demo/n1/agent.log")
    assert n1.bpf_dir == Path("/sys/fs/bpf/pylium-lab-demo/n1")
    assert "pl-demo-mg" not in plan.interface_names  # no management link without etcd


def test_etcd_lab_listens_on_the_fabric() -> None:
    plan = plan_lab(name="e", nodes=1, store="etcd", home=Path("/h"))
    assert plan.store_url == "etcd:http://192.168.250.1:2379"
    assert str(plan.mgmt_address) == "192.168.250.254/24"
    assert plan.mgmt_link in plan.interface_names


def test_longest_names_fit_the_kernel_limit() -> None:
    plan = plan_lab(name="abcdefgh", nodes=MAX_NODES, store="etcd", home=Path("/h"))
    assert max(len(n) for n in plan.interface_names) <= IFNAMSIZ
    addresses = {n.address.ip for n in plan.nodes} | {plan.gateway.ip, plan.mgmt_address.ip}
    assert len(addresses) == MAX_NODES + 2
    assert all(a in plan.subnet for a in addresses)


def test_subnet_avoids_used_networks() -> None:
    used = [ipaddress.IPv4Network("192.168.248.0/22"), ipaddress.IPv4Network("192.168.247.5/32")]
    plan = plan_lab(name="x", nodes=1, store="local", home=Path("/h"), used=used)
    assert plan.subnet == ipaddress.IPv4Network("192.168.246.0/24")
    everything = [ipaddress.IPv4Network("192.168.0.0/16")]
    plan = plan_lab(name="x", nodes=1, store="local", home=Path("/h"), used=everything)
    assert plan.subnet == ipaddress.IPv4Network("172.30.0.0/24")
    with pytest.raises(LabError, match="no free /24"):
        plan_lab(
            name="x",
            nodes=1,
            store="local",
            home=Path("/h"),
            used=[*everything, ipaddress.IPv4Network("172.30.0.0/16")],
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Lab"}, "lab name 'Lab'"),
        ({"name": "abcdefghi"}, "1-8 lowercase"),
        ({"name": "1lab"}, "starting with a letter"),
        ({"nodes": 0}, "--nodes 0"),
        ({"nodes": MAX_NODES + 1}, f"1 to {MAX_NODES}"),
        ({"store": "consul"}, "--store consul"),
        ({"topology": "mesh"}, "--topology mesh: use flat or router"),
        ({"mtu": 576}, "--mtu 576: use 1280 to 9000"),
        ({"mtu": 65535}, "--mtu 65535"),
    ],
)
def test_bad_requests(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "lab", "nodes": 2, "store": "local", "home": Path("/h")}
    args.update(kwargs)
    with pytest.raises(LabError, match=message):
        plan_lab(**args)  # type: ignore[arg-type]


def test_router_routes_follow_cilium_nodes() -> None:
    def node(ip: str | None, **ipam: object) -> dict[str, object]:
        addresses = [{"type": "InternalIP", "ip": ip}] if ip else []
        return {
            "spec": {
                "addresses": [{"type": "ExternalIP", "ip": "9.9.9.9"}, *addresses],
                "ipam": ipam,
            }
        }

    routes = pod_cidr_routes(
        [
            node("192.168.250.11", podCIDRs=["10.0.0.0/24", "fd00::/120"]),
            node(
                "192.168.250.12",
                pools={"allocated": [{"pool": "a", "cidrs": ["10.8.0.0/27", "10.8.0.32/27"]}]},
            ),
            node(None, podCIDRs=["10.0.9.0/24"]),  # not registered yet: no route
            {"spec": {}},
        ]
    )
    via = ipaddress.IPv4Address
    assert routes == {
        ipaddress.IPv4Network("10.0.0.0/24"): via("192.168.250.11"),
        ipaddress.IPv4Network("10.8.0.0/27"): via("192.168.250.12"),
        ipaddress.IPv4Network("10.8.0.32/27"): via("192.168.250.12"),
    }
