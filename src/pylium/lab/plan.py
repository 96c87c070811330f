"""L6: the pure plan of a lab: names, addresses and paths, computed before anything is built.

A lab named ``L`` with nodes ``n1..nN`` is:

- a fabric namespace ``pl-L-fab`` holding the bridge ``br0`` (the underlay), which carries
  the lab subnet's first address (the store, when etcd, listens there);
- per node, a namespace ``pl-L-nK`` with ``eth0`` (a veth whose peer ``nK`` sits on the bridge)
  holding the node's underlay address;
- with the etcd store, a management veth from the root namespace onto the bridge
  (``pl-L-mg``, the subnet's last usable address) so that the CLI reaches the store the way an
  operator's workstation reaches a cluster;
- with ``--topology router`` (the seeds' other native-routing setup), the fabric namespace is
  also a router: every node's default route points at the bridge address, and the fabric holds
  a route to each node's pod CIDRs via that node (kept in step with the CiliumNodes by the lab,
  as a BGP speaker or a cloud route table would be); it sends no ICMP redirects, so nodes
  really go through it;
- a client namespace ``pl-L-cl`` on the bridge (``eth0``, the subnet's third-to-last address),
  a machine of the node network outside every node: NodePort, LoadBalancer and ExternalIPs
  clients (tests add their routes to service VIPs there, as a BGP speaker would);
- every underlay link (bridge, veths) has the lab's ``--mtu`` (jumbo frames when > 1500);
- a state directory ``$PYLIUM_HOME/labs/L`` with ``lab.json`` and per-node directories (agent
  log, API socket, config), and per-node BPF pin directories under
  ``/sys/fs/bpf/pylium-lab-L/`` (pinning needs bpffs, which every namespace shares), and the
  lab's own cgroup v2 mount in the state directory, which the agents mount
  (``cgroup.autoMount``) and which holds a subtree per node with a cgroup per pod.

Interface names are checked against the kernel's 15-character limit here, before anything is
built.

The subnet is the first of the candidate /24s that overlaps nothing in use (routes of the root
namespace, other labs), and never the default pod pool 10.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pylium.base.errors import LabError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,7}$")
"""Lab names are short so that derived interface names stay within 15 characters."""
NODE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,14}$")
"""A node's name is also its fabric-side interface name."""
MAX_NODES = 32
MAX_OPERATOR_REPLICAS = 5
TOPOLOGIES = ("flat", "router")
MIN_MTU, MAX_MTU = 1280, 9000
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
IFNAMSIZ = 15
"""Longest interface name the kernel accepts (IFNAMSIZ 16 with the trailing NUL)."""
BPFFS = Path("/sys/fs/bpf")


def bpf_root(lab: str) -> Path:
    """Where the lab's nodes pin their maps (bpffs is shared by all namespaces)."""
    return BPFFS / f"pylium-lab-{lab}"


def candidate_subnets() -> Iterable[ipaddress.IPv4Network]:
    for third in range(250, 200, -1):
        yield ipaddress.IPv4Network(f"192.168.{third}.0/24")
    for third in range(0, 256):
        yield ipaddress.IPv4Network(f"172.30.{third}.0/24")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePlan:
    name: str
    netns: str
    address: ipaddress.IPv4Interface
    fabric_port: str
    """The bridge-side veth in the fabric namespace."""
    state_dir: Path
    bpf_dir: Path

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "pylium.sock"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "agent.log"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class LabPlan:
    name: str
    subnet: ipaddress.IPv4Network
    store: str
    """``local`` or ``etcd``."""
    state_dir: Path
    nodes: tuple[NodePlan, ...]
    topology: str = "flat"
    mtu: int = 1500

    @property
    def fabric_netns(self) -> str:
        return f"pl-{self.name}-fab"

    @property
    def bridge(self) -> str:
        return "br0"

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.subnet[1]}/{self.subnet.prefixlen}")

    @property
    def mgmt_link(self) -> str:
        return f"pl-{self.name}-mg"

    @property
    def mgmt_address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.subnet[-2]}/{self.subnet.prefixlen}")

    @property
    def client_netns(self) -> str:
        """The client outside the nodes, on the underlay."""
        return f"pl-{self.name}-cl"

    @property
    def client_port(self) -> str:
        """The client's bridge-side veth in the fabric namespace."""
        return "cl"

    @property
    def client_address(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.subnet[-3]}/{self.subnet.prefixlen}")

    @property
    def store_url(self) -> str:
        if self.store == "etcd":
            return f"etcd:http://{self.gateway.ip}:{ETCD_CLIENT_PORT}"
        return f"local:{self.state_dir / 'store.sqlite'}"

    @property
    def cgroup_root(self) -> Path:
        """The lab's cgroup v2 mount (``cgroup-root``): the agents mount it
        (``cgroup.autoMount``); each pod runs in ``<root>/pylium-lab-<lab>/<node>/<container>``
        (every cgroup2 mount shows the same hierarchy, hence the lab's own directory)."""
        return self.state_dir / "cgroupv2"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def operator_log(self) -> Path:
        return self.state_dir / "operator.log"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.json"

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the lab creates, fabric first."""
        return (self.fabric_netns, *(n.netns for n in self.nodes), self.client_netns)

    @property
    def interface_names(self) -> tuple[str, ...]:
        """Every interface name the lab creates (in whichever namespace)."""
        names = [self.bridge, "eth0", self.client_port, *(n.fabric_port for n in self.nodes)]
        if self.store == "etcd":
            names += [self.mgmt_link, "mgmt"]
        return tuple(names)


def plan_lab(
    *,
    name: str,
    nodes: int,
    store: str,
    home: Path,
    used: Iterable[ipaddress.IPv4Network] = (),
    topology: str = "flat",
    mtu: int = 1500,
) -> LabPlan:
    """The plan for a lab; LabError when the request cannot be met."""
    if not NAME_PATTERN.match(name):
        raise LabError(
            f"lab name {name!r}: use 1-8 lowercase letters and digits, starting with a letter"
        )
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes {nodes}: a lab has 1 to {MAX_NODES} nodes")
    if store not in ("local", "etcd"):
        raise LabError(f"--store {store}: use local or etcd")
    if topology not in TOPOLOGIES:
        raise LabError(f"--topology {topology}: use {' or '.join(TOPOLOGIES)}")
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise LabError(f"--mtu {mtu}: use {MIN_MTU} to {MAX_MTU}")
    taken = list(used)
    subnet = next((s for s in candidate_subnets() if not any(s.overlaps(t) for t in taken)), None)
    if subnet is None:
        raise LabError("no free /24 for the lab's underlay (192.168.201-250.0/24, 172.30.0.0/16)")
    state_dir = home / "labs" / name
    node_plans = tuple(node_plan(name, state_dir, subnet, f"n{i}", i) for i in range(1, nodes + 1))
    plan = LabPlan(
        name=name,
        subnet=subnet,
        store=store,
        state_dir=state_dir,
        nodes=node_plans,
        topology=topology,
        mtu=mtu,
    )
    too_long = [n for n in plan.interface_names if len(n) > IFNAMSIZ]
    if too_long:
        raise LabError(f"interface names longer than {IFNAMSIZ} characters: {', '.join(too_long)}")
    return plan


def node_plan(
    lab: str, state_dir: Path, subnet: ipaddress.IPv4Network, name: str, index: int
) -> NodePlan:
    """Node number ``index`` (1-based; its underlay address is the subnet's 10+index-th)."""
    return NodePlan(
        name=name,
        netns=f"pl-{lab}-{name}",
        address=ipaddress.IPv4Interface(f"{subnet[10 + index]}/{subnet.prefixlen}"),
        fabric_port=name,
        state_dir=state_dir / name,
        bpf_dir=bpf_root(lab) / name,
    )


def plan_added_node(
    lab: str,
    state_dir: Path,
    subnet: ipaddress.IPv4Network,
    name: str,
    taken: Iterable[ipaddress.IPv4Interface],
    existing: Iterable[str],
) -> NodePlan:
    """A node joining a running lab: the first underlay address no node holds."""
    if not NODE_NAME_PATTERN.match(name):
        raise LabError(
            f"node name {name!r}: use 1-15 lowercase letters and digits, starting with a letter"
        )
    if name in set(existing):
        raise LabError(f"lab {lab} already has a node {name!r}")
    used = {a.ip for a in taken}
    for index in range(1, MAX_NODES + 1):
        if subnet[10 + index] not in used:
            return node_plan(lab, state_dir, subnet, name, index)
    raise LabError(f"lab {lab} has {MAX_NODES} nodes already")


def check_operator_replicas(replicas: int) -> None:
    if not 1 <= replicas <= MAX_OPERATOR_REPLICAS:
        raise LabError(
            f"operator replicas {replicas}: use 1 to {MAX_OPERATOR_REPLICAS} "
            "(--operator-replicas or --set operator.replicas)"
        )


def pod_cidr_routes(
    cilium_nodes: Iterable[Mapping[str, Any]],
) -> dict[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """What the router must know: each node's IPv4 pod CIDRs (cluster-pool/kubernetes
    ``spec.ipam.podCIDRs`` and multi-pool ``spec.ipam.pools.allocated``) via its InternalIP."""
    routes: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
    for body in cilium_nodes:
        spec = body.get("spec") or {}
        internal = [a["ip"] for a in spec.get("addresses") or [] if a.get("type") == "InternalIP"]
        if not internal:
            continue
        via = ipaddress.IPv4Address(internal[0])
        ipam = spec.get("ipam") or {}
        cidrs = list(ipam.get("podCIDRs") or [])
        for pool in (ipam.get("pools") or {}).get("allocated") or []:
            cidrs += pool.get("cidrs") or []
        for cidr in cidrs:
            network = ipaddress.ip_network(cidr, strict=False)
            if isinstance(network, ipaddress.IPv4Network):
                routes[network] = via
    return routes
