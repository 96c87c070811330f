"""L6: building, inspecting and tearing down a lab from its plan.

Namespaces and root links are recorded in ``lab.json`` (written atomically) just before they
are created, processes right after they start, so that ``down --force`` after a crash removes
exactly what was made (tolerating what was recorded but never made), and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pylium.adapters import fsmount, procs
from pylium.adapters.netlink import netns as nl
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.base.errors import LabError, PyliumError
from pylium.core.cni import PortMapping
from pylium.lab import vpc
from pylium.lab.plan import (
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    LabPlan,
    NodePlan,
    bpf_root,
    check_operator_replicas,
    plan_added_node,
    plan_lab,
    pod_cidr_routes,
)
from pylium.model.resource import Resource
from pylium.operator.main import LEADER_KEY
from pylium.runtime import context
from pylium.runtime.nodekeys import (
    HEARTBEAT_PREFIX,
    OPERATOR_INSTANCES_PREFIX,
    OPERATOR_REPLICAS_KEY,
)

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0


@dataclass
class LabState:
    """What exists of a lab: read from and written to ``lab.json``."""

    name: str
    store_url: str = ""
    netns: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    """Process role (``etcd``, ``operator``, ``agent-n1``...) -> PID."""
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    subnet: str = ""
    pods: dict[str, dict[str, str]] = field(default_factory=dict)
    """``namespace/name`` -> node, netns, container ID, IP."""
    topology: str = "flat"
    mtu: int = 1500
    operator_replicas: int = 1

    @property
    def operator_roles(self) -> list[str]:
        """``operator``, ``operator-2``, ... (the first keeps the single operator's name)."""
        return [
            "operator" if i == 1 else f"operator-{i}" for i in range(1, self.operator_replicas + 1)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "store_url": self.store_url,
            "netns": self.netns,
            "root_links": self.root_links,
            "pids": self.pids,
            "nodes": self.nodes,
            "subnet": self.subnet,
            "pods": self.pods,
            "topology": self.topology,
            "mtu": self.mtu,
            "operator_replicas": self.operator_replicas,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabState:
        return cls(
            name=data["name"],
            store_url=data.get("store_url", ""),
            netns=list(data.get("netns", [])),
            root_links=list(data.get("root_links", [])),
            pids={k: int(v) for k, v in data.get("pids", {}).items()},
            nodes=dict(data.get("nodes", {})),
            subnet=data.get("subnet", ""),
            pods=dict(data.get("pods", {})),
            topology=data.get("topology", "flat"),
            mtu=int(data.get("mtu", 1500)),
            operator_replicas=int(data.get("operator_replicas", 1)),
        )


def state_dir(name: str) -> Path:
    return context.home() / "labs" / name


def bpf_dir(name: str) -> Path:
    """Where the lab's nodes pin their maps (bpffs is shared by all namespaces)."""
    return bpf_root(name)


def load_state(name: str) -> LabState | None:
    path = state_dir(name) / "lab.json"
    try:
        return LabState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as err:
        raise LabError(f"{path}: unreadable lab state ({err}); remove it by hand") from err


def _save(state: LabState) -> None:
    path = state_dir(state.name) / "lab.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2))
    tmp.replace(path)


def list_labs() -> list[str]:
    root = context.home() / "labs"
    return (
        sorted(p.name for p in root.iterdir() if (p / "lab.json").exists()) if root.exists() else []
    )


def _used_subnets() -> list[ipaddress.IPv4Network]:
    used = list(nl.routed_networks())
    for name in list_labs():
        state = load_state(name)
        if state and state.subnet:
            used.append(ipaddress.IPv4Network(state.subnet))
    return used


def _bin(name: str) -> str:
    """The console script next to the running interpreter (the project's venv)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def up(
    *,
    name: str,
    nodes: int,
    store: str,
    configmap: Mapping[str, str],
    topology: str = "flat",
    mtu: int = 1500,
    operator_replicas: int = 1,
) -> LabState:
    """Build the lab; on any failure, remove what was built and re-raise."""
    check_operator_replicas(operator_replicas)
    if load_state(name) is not None:
        raise LabError(f"lab {name!r} already exists: run `pylium lab down --name {name}` first")
    plan = plan_lab(
        name=name,
        nodes=nodes,
        store=store,
        home=context.home(),
        used=_used_subnets(),
        topology=topology,
        mtu=mtu,
    )
    existing = set(nl.list_netns())
    leftovers = [ns for ns in plan.namespaces if ns in existing]
    if plan.store == "etcd" and nl.link_index(None, plan.mgmt_link) is not None:
        leftovers.append(f"link {plan.mgmt_link}")
    if leftovers:
        # Not ours to adopt or delete: a lab whose state was lost, or someone else's.
        raise LabError(
            f"lab {name!r}: {', '.join(leftovers)} already exist but no lab state records them; "
            "remove them by hand (ip netns delete / ip link delete) or choose another --name"
        )
    state = LabState(
        name=name,
        store_url=plan.store_url,
        subnet=str(plan.subnet),
        topology=plan.topology,
        mtu=plan.mtu,
        operator_replicas=operator_replicas,
    )
    _save(state)
    try:
        _build(plan, state, configmap)
    except BaseException:
        log.error("lab up failed; tearing down what was built")
        down(name, force=True)
        raise
    context.set_current(plan.store_url)
    return state


def _build(plan: LabPlan, state: LabState, configmap: Mapping[str, str]) -> None:
    fab = plan.fabric_netns
    state.netns.append(fab)
    _save(state)
    nl.create_netns(fab)
    nl.add_bridge(fab, plan.bridge, mtu=plan.mtu)
    nl.add_address(fab, plan.bridge, plan.gateway)
    if plan.topology == "router":
        nl.set_sysctl(fab, "net.ipv4.ip_forward", "1")
        for scope in ("all", "default", plan.bridge):
            nl.set_sysctl(fab, f"net.ipv4.conf.{scope}.send_redirects", "0")
    for node in plan.nodes:
        _build_node(state, node, plan.gateway.ip)
    _build_client(plan, state)
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    # The lab's own cgroup v2 mount, so that pods' cgroups and the mount go with the lab.
    config = {**configmap, "cgroup-root": str(plan.cgroup_root)}
    if vpc.enabled(config):
        config.update(_build_vpc(plan, state, config))
    plan.config_path.write_text(json.dumps(config, indent=2, sort_keys=True))

    if plan.store == "etcd":
        state.root_links.append(plan.mgmt_link)
        _save(state)
        nl.add_veth(None, plan.mgmt_link, fab, "mgmt", mtu=plan.mtu)
        nl.set_master(fab, "mgmt", plan.bridge)
        nl.add_address(None, plan.mgmt_link, plan.mgmt_address)
        _start_etcd(plan, state)

    store = open_store(plan.store_url)
    try:
        store.revision()  # creates the SQLite database before several processes race for it
        store.put(OPERATOR_REPLICAS_KEY, str(state.operator_replicas).encode())
    finally:
        store.close()

    for role in state.operator_roles:
        _spawn_operator(state, role)
    for node in plan.nodes:
        _spawn_agent(state, node.name)
    _spawn_relay(plan, state)
    _wait_ready(plan, state)
    sync_router(state)


def _build_client(plan: LabPlan, state: LabState) -> None:
    """The client namespace on the fabric (recorded first), default route via the fabric."""
    state.netns.append(plan.client_netns)
    _save(state)
    nl.create_netns(plan.client_netns)
    nl.add_veth(plan.fabric_netns, plan.client_port, plan.client_netns, "eth0", mtu=plan.mtu)
    nl.set_master(plan.fabric_netns, plan.client_port, plan.bridge)
    nl.add_address(plan.client_netns, "eth0", plan.client_address)
    nl.replace_route(plan.client_netns, ipaddress.IPv4Network("0.0.0.0/0"), plan.gateway.ip)


def _build_node(state: LabState, node: NodePlan, gateway: ipaddress.IPv4Address) -> None:
    """The node's namespace on the fabric, with its underlay address (recorded first)."""
    fab = f"pl-{state.name}-fab"
    state.netns.append(node.netns)
    _save(state)
    nl.create_netns(node.netns)
    nl.add_veth(fab, node.fabric_port, node.netns, "eth0", mtu=state.mtu)
    nl.set_master(fab, node.fabric_port, "br0")
    nl.add_address(node.netns, "eth0", node.address)
    if state.topology == "router":
        nl.replace_route(node.netns, ipaddress.IPv4Network("0.0.0.0/0"), gateway)
    state.nodes[node.name] = {
        "netns": node.netns,
        "address": str(node.address),
        "state_dir": str(node.state_dir),
    }
    _save(state)


def add_node(name: str, node: str) -> dict[str, str]:
    """A new node joins the running lab (namespace, agent); returns once its agent is
    registered and beating, like ``lab up`` does for its nodes."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    subnet = ipaddress.IPv4Network(state.subnet)
    plan = plan_added_node(
        name,
        state_dir(name),
        subnet,
        node,
        [ipaddress.IPv4Interface(n["address"]) for n in state.nodes.values()],
        state.nodes,
    )
    if plan.netns in set(nl.list_netns()):
        raise LabError(f"namespace {plan.netns} exists but the lab does not record it")
    _build_node(state, plan, subnet[1])
    pid = _spawn_agent(state, node)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        report = status(name)
        mine = [p for p in report.problems if p.startswith(f"{node}: ")]
        if not mine:
            break
        if not procs.alive(pid):
            raise LabError(
                f"agent-{node} (pid {pid}) exited; see {Path(state.nodes[node]['state_dir'])}"
                "/agent.log"
            )
        if time.monotonic() > deadline:
            raise LabError(f"node {node} not ready in time: " + "; ".join(mine))
        time.sleep(0.2)
    sync_router(state)
    return state.nodes[node]


def remove_node(name: str, node: str) -> list[str]:
    """Take ``node`` out of the cluster as when a machine is decommissioned: its pods and
    agent stop, its namespace, pins and cgroups go, and its Node, CiliumNode and Pods are
    deleted from the store (the operator then frees its pod CIDR and what it held in the
    store, the other agents drop its routes, ipcache entries and health probes)."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    if node not in state.nodes:
        raise LabError(f"lab {name} has no node {node!r} (nodes: {', '.join(sorted(state.nodes))})")
    removed: list[str] = []
    pods = {k: v for k, v in state.pods.items() if v["node"] == node}
    for key, pod in pods.items():
        if pod.get("pid"):
            procs.stop(int(pod["pid"]))
        with contextlib.suppress(FileNotFoundError, LabError, OSError):
            pod_cgroup(name, node, pod["container_id"]).rmdir()
        nl.delete_netns(pod["netns"])
        del state.pods[key]
        _save(state)
        removed.append(f"pod {key}")
    pid = state.pids.pop(f"agent-{node}", 0)
    if pid:
        procs.stop(pid)
        removed.append(f"agent {node} ({pid})")
    _save(state)
    info = state.nodes[node]
    nl.delete_netns(info["netns"])  # its end of the fabric veth goes with it
    state.netns.remove(info["netns"])
    del state.nodes[node]
    _save(state)
    with contextlib.suppress(OSError):
        (state_dir(name) / "cgroupv2" / f"pylium-lab-{name}" / node).rmdir()
    shutil.rmtree(bpf_dir(name) / node, ignore_errors=True)
    shutil.rmtree(info["state_dir"], ignore_errors=True)
    store = open_store(state.store_url)
    try:
        client = ResourceClient(store)
        for key in pods:
            namespace, _, pod_name = key.partition("/")
            client.delete("Pod", pod_name, namespace)
        client.delete("CiliumNode", node)
        client.delete("Node", node)
    finally:
        store.close()
    removed.append(f"Node and CiliumNode {node}")
    sync_router(state)
    return removed


def _build_vpc(plan: LabPlan, state: LabState, config: Mapping[str, str]) -> dict[str, str]:
    """ENI IPAM: the lab's EC2 (moto) and a VPC of its namespaces (:mod:`pylium.lab.vpc`)."""

    def record(role: str, pid: int) -> None:
        state.pids[role] = pid
        _save(state)

    return vpc.build(
        lab=plan.name,
        lab_dir=plan.state_dir,
        underlay=plan.subnet,
        gateway=plan.gateway.ip,
        fabric_netns=plan.fabric_netns,
        bridge=plan.bridge,
        mtu=plan.mtu,
        nodes={n.name: (n.netns, n.address) for n in plan.nodes},
        config=config,
        record=record,
    )


def relay_socket(name: str) -> Path:
    """Where the lab's Hubble Relay also listens (reachable from any namespace)."""
    return state_dir(name) / "hubble-relay.sock"


def _spawn_relay(plan: LabPlan, state: LabState) -> int:
    """Hubble Relay in the fabric namespace (it reaches every node's :4244), on the fabric's
    address :4245 and a unix socket in the lab directory."""
    argv = [_bin("pylium-hubble-relay"), "--store", state.store_url]
    argv += [
        "--listen-address",
        f"{plan.gateway.ip}:4245",
        "--socket",
        str(relay_socket(plan.name)),
    ]
    pid = procs.spawn(argv, log_path=plan.state_dir / "hubble-relay.log", netns=plan.fabric_netns)
    state.pids["hubble-relay"] = pid
    _save(state)
    return pid


def sync_router(state: LabState) -> None:
    """With the router topology, the fabric's routes to the pod CIDRs follow the CiliumNodes
    (added, moved and removed)."""
    if state.topology != "router":
        return
    store = open_store(state.store_url)
    try:
        desired = pod_cidr_routes(r.body for r in ResourceClient(store).list("CiliumNode")[0])
    finally:
        store.close()
    fab = f"pl-{state.name}-fab"
    current = nl.gateway_routes(fab)
    for cidr, via in desired.items():
        if current.get(cidr) != via:
            nl.replace_route(fab, cidr, via)
    for cidr in current:
        if cidr not in desired:
            nl.delete_route(fab, cidr)


def _spawn_agent(state: LabState, node: str) -> int:
    info = state.nodes[node]
    node_dir = Path(info["state_dir"])
    argv = [_bin("pylium-agent"), "--node-name", node, "--node-ip", info["address"].split("/")[0]]
    argv += ["--store", state.store_url, "--config", str(state_dir(state.name) / "config.json")]
    argv += ["--state-dir", str(node_dir), "--bpf-pin-dir", str(bpf_dir(state.name) / node)]
    argv += ["--write-cni-conf-when-ready", str(cni_conf_path(state, node))]
    argv += ["--cni-bin-path", str(node_dir / "cni" / "bin")]
    # Socket-LB attaches where this node's pods live (pod_cgroup), not at the shared root.
    argv += ["--cgroup-subtree", f"pylium-lab-{state.name}/{node}"]
    env = vpc.agent_env(state_dir(state.name), node)
    pid = procs.spawn(argv, log_path=node_dir / "agent.log", netns=info["netns"], env=env)
    state.pids[f"agent-{node}"] = pid
    _save(state)
    return pid


def _spawn_operator(state: LabState, role: str = "operator") -> int:
    """One operator replica (``operator``, ``operator-2``...), logging to ``<role>.log``."""
    argv = [_bin("pylium-operator"), "--store", state.store_url]
    argv += ["--config", str(state_dir(state.name) / "config.json")]
    argv += ["--identity", f"{state.name}-{role}"]
    placement = vpc.operator_placement(state_dir(state.name), f"pl-{state.name}-fab")
    pid = procs.spawn(argv, log_path=state_dir(state.name) / f"{role}.log", **placement)
    state.pids[role] = pid
    _save(state)
    return pid


def spawn_lab_process(name: str, role: str, argv: Sequence[str], *, netns: str) -> int:
    """A helper process of the lab (test servers...), recorded so that ``down`` ends it."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    pid = procs.spawn(list(argv), log_path=state_dir(name) / f"{role}.log", netns=netns)
    state.pids[role] = pid
    _save(state)
    return pid


def restart(name: str, target: str, *, kill: bool = False) -> int:
    """Stop a node's agent or the operator (SIGKILL with ``kill``, as a crash would) and start
    it again with the lab's current config.json; returns the new PID."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    operators = state.operator_roles
    if target not in operators and target not in state.nodes:
        raise LabError(
            f"lab {name} has no node {target!r} (or use {' or '.join(repr(r) for r in operators)})"
        )
    pid = state.pids.get(target if target in operators else f"agent-{target}", 0)
    if pid:
        procs.stop(pid, kill=kill)
    return _spawn_operator(state, target) if target in operators else _spawn_agent(state, target)


def _start_etcd(plan: LabPlan, state: LabState) -> None:
    data_dir = plan.state_dir / "etcd"
    ip = plan.gateway.ip
    state.pids["etcd"] = procs.spawn(
        [
            "etcd",
            "--name",
            f"pylium-{plan.name}",
            "--data-dir",
            str(data_dir),
            "--logger=zap",
            "--log-level=warn",
            "--listen-client-urls",
            f"http://{ip}:{ETCD_CLIENT_PORT}",
            "--advertise-client-urls",
            f"http://{ip}:{ETCD_CLIENT_PORT}",
            "--listen-peer-urls",
            f"http://{ip}:{ETCD_PEER_PORT}",
            "--initial-advertise-peer-urls",
            f"http://{ip}:{ETCD_PEER_PORT}",
            "--initial-cluster",
            f"pylium-{plan.name}=http://{ip}:{ETCD_PEER_PORT}",
            "--listen-metrics-urls",
            "http://127.0.0.1:0",
        ],
        log_path=plan.state_dir / "etcd.log",
        netns=plan.fabric_netns,
    )
    _save(state)
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        store = open_store(plan.store_url)
        try:
            store.revision()
            return
        except PyliumError:
            if not procs.alive(state.pids["etcd"]) or time.monotonic() > deadline:
                raise LabError(f"etcd did not start; see {plan.state_dir / 'etcd.log'}") from None
            time.sleep(0.2)
        finally:
            store.close()


def _wait_ready(plan: LabPlan, state: LabState) -> None:
    """Until every agent has registered and sends heartbeats and the operator leads."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        report = status(plan.name)
        if report.healthy:
            return
        for role, pid in state.pids.items():
            if not procs.alive(pid):
                # The lab is torn down after this error, its logs with it: quote the end.
                raise LabError(f"{role} (pid {pid}) exited; its log ends:\n{_log_tail(plan, role)}")
        if time.monotonic() > deadline:
            raise LabError("lab not ready in time: " + "; ".join(report.problems))
        time.sleep(0.2)


def _log_tail(plan: LabPlan, role: str, lines: int = 15) -> str:
    node = role.removeprefix("agent-")
    path = (
        plan.state_dir / node / "agent.log"
        if role.startswith("agent-")
        else plan.state_dir / f"{role}.log"
    )
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"({path}: {err})"


@dataclass
class LabStatus:
    name: str
    store_url: str
    nodes: list[dict[str, Any]]
    operator: dict[str, Any]
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "store": self.store_url,
            "store_backend": self.store_url.partition(":")[0],
            "healthy": self.healthy,
            "nodes": self.nodes,
            "operator": self.operator,
            "problems": self.problems,
        }


def _has_address(ns: str, address: ipaddress.IPv4Interface) -> bool:
    try:
        return address in nl.addresses(ns, "eth0")
    except PyliumError:  # the namespace went away meanwhile
        return False


def status(name: str) -> LabStatus:
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r} (run `pylium lab up`)")
    problems: list[str] = []
    existing = set(nl.list_netns())
    nodes: list[dict[str, Any]] = []
    try:
        store = open_store(state.store_url)
        client = ResourceClient(store)
        registered = {r.name for r in client.list("Node")[0]}
        cilium_nodes = {r.name for r in client.list("CiliumNode")[0]}
        beats = {kv.key.removeprefix(HEARTBEAT_PREFIX) for kv in store.list(HEARTBEAT_PREFIX).items}
        leader_kv = store.get(LEADER_KEY)
        leader = leader_kv.value.decode() if leader_kv else ""
        instances = {kv.value.decode() for kv in store.list(OPERATOR_INSTANCES_PREFIX).items}
        store.close()
    except PyliumError as err:
        problems.append(f"store {state.store_url} unreachable: {err}")
        registered, cilium_nodes, beats, leader, instances = set(), set(), set(), "", set()
    for node_name, info in sorted(state.nodes.items()):
        pid = state.pids.get(f"agent-{node_name}", 0)
        in_netns = info["netns"] in existing
        address = ipaddress.IPv4Interface(info["address"])
        row = {
            "name": node_name,
            "netns": in_netns,
            "address": info["address"],
            "address_present": in_netns and _has_address(info["netns"], address),
            "agent_pid": pid,
            "agent_running": bool(pid) and procs.alive(pid),
            "registered": node_name in registered and node_name in cilium_nodes,
            "heartbeat": node_name in beats,
        }
        for key, what in (
            ("netns", "namespace missing"),
            ("address_present", f"underlay address {address} missing on eth0"),
            ("agent_running", "agent not running"),
            ("registered", "Node/CiliumNode not registered"),
            ("heartbeat", "no heartbeat"),
        ):
            if not row[key]:
                problems.append(f"{node_name}: {what}")
        nodes.append(row)
    replicas = []
    for role in state.operator_roles:
        pid = state.pids.get(role, 0)
        identity = f"{state.name}-{role}"
        replicas.append(
            {
                "role": role,
                "identity": identity,
                "pid": pid,
                "running": bool(pid) and procs.alive(pid),
                "registered": identity in instances,
                "leader": identity == leader,
            }
        )
    running = [r for r in replicas if r["running"]]
    operator = {
        "pid": replicas[0]["pid"],
        "running": bool(running),
        "leader": leader,
        "replicas": replicas,
        "desired": state.operator_replicas,
        "ready": sum(1 for r in running if r["registered"]),
    }
    for replica in replicas:
        if not replica["running"]:
            problems.append(f"{replica['role']} not running")
    if running and not leader:
        problems.append("operator has not acquired leadership")
    return LabStatus(state.name, state.store_url, nodes, operator, problems)


def down(name: str, *, force: bool = False) -> list[str]:
    """Remove everything the lab's state records; returns what was removed.

    Without ``force`` a missing lab is an error; with it, every step tolerates pieces that
    are already gone (after a crash) and the remaining ones are still removed.
    """
    state = load_state(name)
    if state is None:
        if force:
            shutil.rmtree(state_dir(name), ignore_errors=True)
            return []
        raise LabError(f"no lab named {name!r}")
    removed: list[str] = []
    errors: list[str] = []
    # Agents first, then the operator, then the store they write to.
    roles = sorted(state.pids, key=lambda r: (r == "etcd", r == "operator", r))
    for role in roles:
        pid = state.pids[role]
        try:
            procs.stop(pid)
            removed.append(f"process {role} ({pid})")
        except PyliumError as err:
            errors.append(str(err))
    # A crash between starting a daemon and recording it leaves one unrecorded: every daemon
    # names the lab's directory on its command line, so it is found and ended by its PID.
    for pid in procs.pids_naming(str(state_dir(name))):
        try:
            procs.stop(pid)
            removed.append(f"unrecorded process {pid}")
        except PyliumError as err:
            errors.append(str(err))
    for pod in state.pods.values():
        if pod.get("pid"):
            try:
                procs.stop(int(pod["pid"]))
            except PyliumError as err:
                errors.append(str(err))
        try:
            nl.delete_netns(pod["netns"])
            removed.append(f"netns {pod['netns']}")
        except PyliumError as err:
            errors.append(str(err))
    try:
        _remove_cgroups(name)
    except (OSError, PyliumError) as err:
        errors.append(f"cgroups: {err}")
    shutil.rmtree(bpf_dir(name), ignore_errors=True)
    for link in state.root_links:
        try:
            nl.delete_link(None, link)
            removed.append(f"link {link}")
        except PyliumError as err:
            errors.append(str(err))
    for ns in reversed(state.netns):
        try:
            nl.delete_netns(ns)
            removed.append(f"netns {ns}")
        except PyliumError as err:
            errors.append(str(err))
    if errors and not force:
        _save(state)
        raise LabError("lab down incomplete: " + "; ".join(errors) + " (retry with --force)")
    context.clear_current(state.store_url)
    shutil.rmtree(state_dir(name), ignore_errors=True)
    return removed


def current_lab() -> str | None:
    """The lab whose store is the current context, if any."""
    try:
        url = context.resolve_store_url()
    except PyliumError:
        return None
    for name in list_labs():
        state = load_state(name)
        if state is not None and state.store_url == url:
            return name
    return None


def agent_socket(node: str, lab: str | None = None) -> Path:
    """The API socket of ``node``'s agent in ``lab`` (default: the current lab)."""
    name = lab or current_lab()
    if name is None:
        raise LabError("no current lab: run `pylium lab up` or pass --lab")
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    if node not in state.nodes:
        raise LabError(f"lab {name} has no node {node!r} (nodes: {', '.join(sorted(state.nodes))})")
    return Path(state.nodes[node]["state_dir"]) / "pylium.sock"


def cni_conf_path(state: LabState, node: str) -> Path:
    """The node's CNI config directory lives in its state directory (not the host's /etc)."""
    return Path(state.nodes[node]["state_dir"]) / "cni" / "net.d" / "05-cilium.conflist"


def _cni(
    state: LabState, node: str, env: dict[str, str], host_ports: Sequence[PortMapping] = ()
) -> dict[str, Any] | None:
    """Run pylium-cni in ``node``'s namespace as a container runtime would: the network
    configuration comes from the conflist the agent installed once ready; ``host_ports`` go
    into ``runtimeConfig.portMappings`` only when the plugin declares that capability."""
    info = state.nodes[node]
    path = cni_conf_path(state, node)
    deadline = time.monotonic() + READY_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(f"node {node} has no CNI configuration ({path}): is its agent ready?")
        time.sleep(0.2)
    conflist = json.loads(path.read_text())
    conf = {
        "cniVersion": conflist["cniVersion"],
        "name": conflist["name"],
        **conflist["plugins"][0],
    }
    if host_ports and (conf.get("capabilities") or {}).get("portMappings"):
        conf["runtimeConfig"] = {"portMappings": [m.to_wire() for m in host_ports]}
    cmd = ["nsenter", f"--net=/run/netns/{info['netns']}", "--", _bin("pylium-cni")]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_PATH": "/usr/lib/cni", **env}
    result = subprocess.run(
        cmd, input=json.dumps(conf), env=full_env, capture_output=True, text=True, timeout=60
    )
    answer = json.loads(result.stdout) if result.stdout.strip() else None
    if result.returncode != 0:
        detail = (
            answer.get("msg", "") + ": " + answer.get("details", "") if answer else result.stderr
        )
        raise LabError(f"CNI {env['CNI_COMMAND']} on {node} failed: {detail.strip()}")
    return answer


def add_pod(
    name: str,
    node: str,
    pod: str,
    *,
    namespace: str = "default",
    labels: Mapping[str, str] = {},
    command: Sequence[str] = (),
    host_ports: Sequence[PortMapping] = (),
) -> dict[str, str]:
    """Create a pod the way a runtime does: a namespace, CNI ADD through pylium-cni, then
    ``command`` started detached inside it (output to the pod's log). ``host_ports`` are
    the containers' hostPorts, passed as the ``portMappings`` capability when the
    conflist's plugins declare it (as containerd and CRI-O do)."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    if node not in state.nodes:
        raise LabError(f"lab {name} has no node {node!r}")
    key = f"{namespace}/{pod}"
    if key in state.pods:
        raise LabError(f"pod {key} already exists in lab {name}")
    container_id = hashlib.sha256(f"{name}/{key}/{time.time()}".encode()).hexdigest()[:32]
    netns = f"pl-{name}-pod-{container_id[:8]}"
    store = open_store(state.store_url)
    client = ResourceClient(store)
    try:
        client.apply(
            [
                Resource(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": pod, "namespace": namespace, "labels": dict(labels)},
                        "spec": {
                            "nodeName": node,
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "lab",
                                    "ports": [
                                        {
                                            "containerPort": m.container_port,
                                            "hostPort": m.host_port,
                                            "protocol": m.protocol.upper(),
                                        }
                                        for m in host_ports
                                    ],
                                }
                            ],
                        },
                    }
                )
            ]
        )
        nl.create_netns(netns)
        state.pods[key] = {"node": node, "netns": netns, "container_id": container_id, "ip": ""}
        _save(state)
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
        }
        try:
            answer = _cni(state, node, env, host_ports)
        except LabError:
            nl.delete_netns(netns)
            del state.pods[key]
            _save(state)
            client.delete("Pod", pod, namespace)
            raise
        assert answer is not None
        ip = answer["ips"][0]["address"].split("/")[0]
        state.pods[key]["ip"] = ip
        _save(state)

        def set_ip(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            body["status"] = {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "hostIP": state.nodes[node]["address"].split("/")[0],
            }
            return body

        client.mutate("Pod", pod, namespace, fn=set_ip)
        sync_router(state)  # a multi-pool node may have taken a new CIDR for this pod
        if command:
            cgroup = pod_cgroup(name, node, container_id)
            cgroup.mkdir(parents=True, exist_ok=True)
            pid = procs.spawn(
                list(command), log_path=pod_log(name, namespace, pod), netns=netns, cgroup=cgroup
            )
            state.pods[key]["pid"] = str(pid)
            _save(state)
    finally:
        store.close()
    return state.pods[key]


def exec_in_pod(name: str, pod: str, namespace: str, argv: Sequence[str]) -> int:
    """Run ``argv`` in the pod as ``kubectl exec`` does: in its network namespace *and* its
    cgroup (socket-LB, like every cgroup hook, follows the cgroup); returns the exit code."""
    info = pod_info(name, pod, namespace)
    cgroup = pod_cgroup(name, info["node"], info["container_id"])
    cgroup.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{info['netns']}", "--", *argv],
        preexec_fn=lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())),
        check=False,
    )
    return result.returncode


def pod_cgroup(name: str, node: str, container_id: str) -> Path:
    """The pod's cgroup in its node's subtree. Every cgroup2 mount shows the same hierarchy,
    so the lab's own mount holds a ``pylium-lab-<name>`` directory to keep labs apart."""
    root = state_dir(name) / "cgroupv2"
    if not fsmount.is_mounted(root, fsmount.CGROUP2):
        raise LabError(f"{root} is not a cgroup2 mount: is the agent on {node} running?")
    return root / f"pylium-lab-{name}" / node / container_id[:12]


def _remove_cgroups(name: str) -> None:
    """The lab's pods' and nodes' cgroups (their processes are gone by now), then the mount,
    which is removed even when a cgroup cannot be (lazily, if still busy)."""
    root = state_dir(name) / "cgroupv2"
    if not fsmount.is_mounted(root, fsmount.CGROUP2):
        return
    lab_tree = root / f"pylium-lab-{name}"
    try:
        if lab_tree.is_dir():
            for node in [p for p in lab_tree.iterdir() if p.is_dir()]:
                for pod in [p for p in node.iterdir() if p.is_dir()]:
                    pod.rmdir()
                node.rmdir()
            lab_tree.rmdir()
    finally:
        fsmount.unmount(root, fsmount.CGROUP2)


def pod_log(name: str, namespace: str, pod: str) -> Path:
    return state_dir(name) / "pods" / f"{namespace}_{pod}.log"


def pod_info(name: str, pod: str, namespace: str = "default") -> dict[str, str]:
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    info = state.pods.get(f"{namespace}/{pod}")
    if info is None:
        raise LabError(f"no pod {namespace}/{pod} in lab {name}")
    return info


def delete_pod(name: str, pod: str, *, namespace: str = "default") -> None:
    """Stop the pod's process (as a runtime stops the containers first), CNI DEL, then the
    pod's namespace, its cgroup and its Pod object."""
    state = load_state(name)
    if state is None:
        raise LabError(f"no lab named {name!r}")
    key = f"{namespace}/{pod}"
    info = state.pods.get(key)
    if info is None:
        raise LabError(f"no pod {key} in lab {name}")
    if info.get("pid"):
        procs.stop(int(info["pid"]))
    with contextlib.suppress(FileNotFoundError, LabError):  # made by its command or an exec
        pod_cgroup(name, info["node"], info["container_id"]).rmdir()
    _cni(
        state,
        info["node"],
        {
            "CNI_COMMAND": "DEL",
            "CNI_CONTAINERID": info["container_id"],
            "CNI_NETNS": f"/run/netns/{info['netns']}",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
        },
    )
    nl.delete_netns(info["netns"])
    del state.pods[key]
    _save(state)
    store = open_store(state.store_url)
    try:
        ResourceClient(store).delete("Pod", pod, namespace)
    finally:
        store.close()
