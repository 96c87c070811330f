"""L6: ``pylium connectivity test`` on a lab: upstream's connectivity test, scenario by scenario.

Deployment (namespaces ``cilium-test`` and ``cilium-test-2``, as upstream names its test
namespace): ``client`` and ``client2`` (``kind=client``; ``client2`` also ``other=client``) and
``echo-same-node`` (``kind=echo``) on the first node, ``echo-other-node`` on the second (the
first when the lab has one node), ``client3`` in ``cilium-test-2`` on the second node; echo
pods serve HTTP on 8080 with hostPort 4000 (upstream's), each behind a NodePort Service of its
name. Outside the cluster, a server on the fabric's address stands for the world, and a server
on the first node's address for the host.

Load-balanced targets (``service:``, ``hostport:``, ``nodeport-local:``, ``nodeport-remote:``
before an echo pod's name) need kube-proxy replacement: without it (no kube-proxy here either)
those checks are skipped, as upstream skips tests whose feature requirements are not met, and a
scenario left with none is reported as skipped. Checks run in the source pod's network
namespace and cgroup (``kubectl exec``'s place), where socket-LB applies. The source
``outside`` is the lab's client namespace on the fabric (``north-south-loadbalancing``: the
echo Services' NodePorts on each node from outside the cluster). ``health`` asks every agent to
probe every node now and expects each to reach all of them (``cilium-health``'s view).

A scenario applies its policies, waits until every agent's policy maps reflect them (the
agents report the store revision their maps are in sync with), runs its checks in parallel
(HTTP from a source to a target, expected to succeed or not) and removes its policies. A failed
check is explained with ``pylium policy explain``'s engine.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pylium.adapters import procs
from pylium.adapters.agentapi import AgentClient
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.base.errors import LabError, PyliumError
from pylium.core.cni import PortMapping
from pylium.core.health import HealthReport
from pylium.core.identity.numeric import ReservedIdentity
from pylium.core.policy import cidr
from pylium.lab import cluster
from pylium.model import codec
from pylium.model.config import AgentSettings
from pylium.model.resource import Resource
from pylium.runtime import policy as cluster_policy
from pylium.runtime.daemon import read_configmap

NS, NS2 = "cilium-test", "cilium-test-2"
PORT = 8080
HOST_PORT = 4000
"""Upstream's echo pods' hostPort (``echoServerHostPort``)."""
LB_KINDS = ("service", "hostport", "nodeport-local", "nodeport-remote")
"""Target prefixes that go through the load balancer (``service:echo-same-node``)."""
CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n"); sys.exit(0 if c.recv(4) == b"HTTP" else 3)
except OSError:
    sys.exit(1)
"""
SYNC_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PodSpec:
    name: str
    namespace: str
    labels: dict[str, str]
    second_node: bool = False
    echo: bool = False


PODS = (
    PodSpec("client", NS, {"name": "client", "kind": "client"}),
    PodSpec("client2", NS, {"name": "client2", "kind": "client", "other": "client"}),
    PodSpec("echo-same-node", NS, {"name": "echo-same-node", "kind": "echo"}, echo=True),
    PodSpec(
        "echo-other-node",
        NS,
        {"name": "echo-other-node", "kind": "echo"},
        second_node=True,
        echo=True,
    ),
    PodSpec("client3", NS2, {"name": "client3", "kind": "client"}, second_node=True),
)


@dataclass(frozen=True, slots=True)
class Check:
    """``source`` and ``target`` name a pod (``ns/name``; ``cilium-test`` when unqualified),
    ``world`` (the fabric's server) or ``host`` (the first node's server); a target may also
    be an echo pod reached through the load balancer: ``service:<echo>`` (its ClusterIP),
    ``hostport:<echo>`` (its node's address, port 4000), ``nodeport-local:<echo>`` and
    ``nodeport-remote:<echo>`` (its Service's nodePort on the first / second node's address:
    the clients using them run on the first node)."""

    source: str
    target: str
    expect: bool

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}: {'allowed' if self.expect else 'denied'}"

    @property
    def load_balanced(self) -> bool:
        return self.target.partition(":")[0] in LB_KINDS


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    checks: tuple[Check, ...]
    policies: str = ""
    """YAML documents applied for the scenario (validated like ``pylium apply``)."""
    verify: Callable[[str], list[str]] | None = None
    """A check that is not a connection: the lab's name in, failures out."""


@dataclass
class Outcome:
    scenario: str
    failures: list[str] = field(default_factory=list)
    checks: int = 0
    seconds: float = 0.0
    skipped: str = ""
    """Why the scenario did not run (a feature it needs is off)."""

    @property
    def ok(self) -> bool:
        return not self.failures


ECHOES = ("echo-same-node", "echo-other-node")
OUTSIDE = "outside"
"""The client outside the cluster: the lab's client namespace on the fabric."""
CLIENTS = ("client", "client2")


def _matrix(
    allowed: Callable[[str, str], bool], targets: Sequence[str] = ECHOES
) -> tuple[Check, ...]:
    return tuple(Check(c, t, allowed(c, t)) for c in (*CLIENTS, f"{NS2}/client3") for t in targets)


def _cnp(name: str, spec: str, kind: str = "CiliumNetworkPolicy", namespace: str = NS) -> str:
    meta = (
        f"{{name: {name}}}"
        if kind == "CiliumClusterwideNetworkPolicy"
        else f"{{name: {name}, namespace: {namespace}}}"
    )
    api = "networking.k8s.io/v1" if kind == "NetworkPolicy" else "cilium.io/v2"
    return f"apiVersion: {api}\nkind: {kind}\nmetadata: {meta}\nspec:\n{spec}\n---\n"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip("\n").splitlines())


CLIENT_INGRESS_SPEC = _indent("""
endpointSelector: {matchLabels: {kind: echo}}
ingress:
- fromEndpoints: [{matchLabels: {name: client}}]
""")
ECHO_INGRESS_SPEC = _indent(f"""
endpointSelector: {{matchLabels: {{kind: echo}}}}
ingress:
- fromEndpoints: [{{matchLabels: {{kind: client}}}}]
  toPorts: [{{ports: [{{port: "{PORT}", protocol: TCP}}]}}]
""")


def scenarios(world: str, host: str, fabric: str, two_nodes: bool = True) -> tuple[Scenario, ...]:
    """Upstream's scenario names; ``world`` and ``host`` are the outside servers' addresses,
    ``fabric`` the lab's underlay subnet (both lie in it). With ``two_nodes``, the first
    node's host is remote-node to ``echo-other-node`` (not its host: allow-localhost and
    ``fromEntities: [host]`` do not cover it)."""
    everyone = _matrix(lambda c, t: True)
    other_is_host = not two_nodes
    return (
        Scenario(
            "no-policies",
            (
                *everyone,
                Check("client", "world", True),
                Check("client", "host", True),
                Check("host", "echo-same-node", True),
                Check("host", "echo-other-node", True),
                # pod-to-service from both nodes' clients; pod-to-hostport on each node, from
                # its own node (socket-LB) and from the other (bpf_host, as a NodePort)
                *(
                    Check(c, f"service:{e}", True)
                    for c in ("client", f"{NS2}/client3")
                    for e in ECHOES
                ),
                Check("client", "hostport:echo-same-node", True),
                Check("client", "hostport:echo-other-node", True),
                Check(f"{NS2}/client3", "hostport:echo-other-node", True),
            ),
        ),
        Scenario(
            "no-policies-extra",
            tuple(
                Check("client", f"nodeport-{where}:{e}", True)
                for where in ("local", "remote")
                for e in ECHOES
            ),
        ),
        Scenario(
            "north-south-loadbalancing",
            tuple(
                Check(OUTSIDE, f"nodeport-{where}:{e}", True)
                for where in ("local", "remote")
                for e in ECHOES
            ),
        ),
        Scenario("health", (), verify=health_failures),
        Scenario(
            "allow-all-except-world",
            (*everyone, Check("client", "world", False), Check("client2", "world", False)),
            _cnp(
                "allow-all-except-world",
                _indent("""
endpointSelector: {}
ingress: [{fromEntities: [cluster]}]
egress: [{toEntities: [cluster]}]
"""),
                kind="CiliumClusterwideNetworkPolicy",
            ),
        ),
        Scenario(
            "client-ingress",
            _matrix(lambda c, t: c == "client"),
            _cnp("client-ingress", CLIENT_INGRESS_SPEC),
        ),
        Scenario(
            "client-ingress-knp",
            _matrix(lambda c, t: c == "client"),
            _cnp(
                "client-ingress-knp",
                _indent("""
podSelector: {matchLabels: {kind: echo}}
policyTypes: [Ingress]
ingress:
- from: [{podSelector: {matchLabels: {name: client}}}]
"""),
                kind="NetworkPolicy",
            ),
        ),
        Scenario(
            "all-ingress-deny",
            (
                *_matrix(lambda c, t: False),
                Check("host", "echo-same-node", True),
                Check("host", "echo-other-node", other_is_host),
            ),
            _cnp(
                "all-ingress-deny",
                _indent("""
endpointSelector: {}
ingress: [{}]
"""),
            ),
        ),
        Scenario(
            "all-egress-deny",
            (*_matrix(lambda c, t: c == f"{NS2}/client3"), Check("client", "world", False)),
            _cnp(
                "all-egress-deny",
                _indent("""
endpointSelector: {}
egress: [{}]
"""),
            ),
        ),
        Scenario(
            "echo-ingress",
            _matrix(lambda c, t: c != f"{NS2}/client3"),
            _cnp("echo-ingress", ECHO_INGRESS_SPEC),
        ),
        Scenario(
            "echo-ingress-from-other-namespace",
            _matrix(lambda c, t: c == f"{NS2}/client3"),
            _cnp(
                "echo-ingress-from-other-namespace",
                _indent(f"""
podSelector: {{matchLabels: {{kind: echo}}}}
policyTypes: [Ingress]
ingress:
- from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {NS2}}}}}}}]
  ports: [{{port: {PORT}, protocol: TCP}}]
"""),
                kind="NetworkPolicy",
            ),
        ),
        Scenario(
            "client-egress",
            (
                *_matrix(lambda c, t: True),
                Check("client", "world", False),
                Check("client2", "world", True),
            ),
            _cnp(
                "client-egress",
                _indent(f"""
endpointSelector: {{matchLabels: {{name: client}}}}
egress:
- toEndpoints: [{{matchLabels: {{kind: echo}}}}]
  toPorts: [{{ports: [{{port: "{PORT}", protocol: TCP}}]}}]
"""),
            ),
        ),
        Scenario(
            "client-egress-expression",
            (*_matrix(lambda c, t: c != "client" or t == "echo-other-node"),),
            _cnp(
                "client-egress-expression",
                _indent("""
endpointSelector: {matchLabels: {name: client}}
egress:
- toEndpoints:
  - matchExpressions: [{key: name, operator: In, values: [echo-other-node]}]
"""),
            ),
        ),
        Scenario(
            "echo-ingress-port-range",
            _matrix(lambda c, t: True),
            _cnp(
                "echo-ingress-port-range",
                _indent(f"""
endpointSelector: {{matchLabels: {{kind: echo}}}}
ingress:
- toPorts: [{{ports: [{{port: "{PORT - 80}", endPort: {PORT + 19}, protocol: TCP}}]}}]
"""),
            ),
        ),
        Scenario(
            "echo-ingress-port-range-miss",
            _matrix(lambda c, t: False),
            _cnp(
                "echo-ingress-port-range-miss",
                _indent(f"""
endpointSelector: {{matchLabels: {{kind: echo}}}}
ingress:
- toPorts: [{{ports: [{{port: "{PORT + 1}", endPort: {PORT + 100}, protocol: TCP}}]}}]
"""),
            ),
        ),
        Scenario(
            "to-entities-world",
            (*_matrix(lambda c, t: c != "client"), Check("client", "world", True)),
            _cnp(
                "to-entities-world",
                _indent("""
endpointSelector: {matchLabels: {name: client}}
egress: [{toEntities: [world]}]
"""),
            ),
        ),
        Scenario(
            "from-entities-host",
            (
                *_matrix(lambda c, t: False),
                Check("host", "echo-same-node", True),
                Check("host", "echo-other-node", other_is_host),
            ),
            _cnp(
                "from-entities-host",
                _indent("""
endpointSelector: {matchLabels: {kind: echo}}
ingress: [{fromEntities: [host]}]
"""),
            ),
        ),
        Scenario(
            "client-egress-to-cidr",
            (
                *_matrix(lambda c, t: c != "client"),
                Check("client", "world", True),
                Check("client", "host", False),
            ),
            _cnp(
                "client-egress-to-cidr",
                _indent(f"""
endpointSelector: {{matchLabels: {{name: client}}}}
egress: [{{toCIDR: [{world}/32]}}]
"""),
            ),
        ),
        Scenario(
            "client-egress-to-cidrset-except",
            (*_matrix(lambda c, t: c != "client"), Check("client", "world", False)),
            _cnp(
                "client-egress-to-cidrset-except",
                _indent(f"""
endpointSelector: {{matchLabels: {{name: client}}}}
egress: [{{toCIDRSet: [{{cidr: {fabric}, except: [{world}/32]}}]}}]
"""),
            ),
        ),
        Scenario(
            "client-ingress-from-other-client-deny",
            _matrix(lambda c, t: c != "client2"),
            _cnp(
                "client-ingress-from-other-client-deny",
                _indent("""
endpointSelector: {matchLabels: {kind: echo}}
ingress: [{fromEntities: [all]}]
ingressDeny: [{fromEndpoints: [{matchLabels: {other: client}}]}]
"""),
            ),
        ),
        Scenario(
            "client-egress-to-echo-deny",
            (
                *_matrix(lambda c, t: c != "client" or t != "echo-same-node"),
                Check("client", "world", True),
            ),
            _cnp(
                "client-egress-to-echo-deny",
                _indent("""
endpointSelector: {matchLabels: {name: client}}
egress: [{toEntities: [all]}]
egressDeny: [{toEndpoints: [{matchLabels: {name: echo-same-node}}]}]
"""),
            ),
        ),
        # Last, as upstream runs it: what every agent dropped during the run.
        Scenario("no-unexpected-packet-drops", (), verify=unexpected_drops),
    )


@dataclass
class Deployment:
    lab: str
    nodes: tuple[str, str]
    addresses: dict[str, str]
    """``ns/name``, ``world``, ``host`` and the load-balanced targets -> IP."""
    netns: dict[str, str]
    """Sources: ``ns/name`` and ``host`` -> network namespace."""
    fabric: str
    """The lab's underlay subnet."""
    ports: dict[str, int] = field(default_factory=dict)
    """Targets on another port than 8080 (hostPort, nodePorts)."""
    cgroups: dict[str, Path] = field(default_factory=dict)
    """Pod sources -> their cgroup (socket-LB follows it)."""
    load_balancing: bool = False
    """Kube-proxy replacement is on: load-balanced targets can be checked."""


def _qualify(name: str) -> str:
    if "/" in name or name in ("world", "host", OUTSIDE) or ":" in name:
        return name
    return f"{NS}/{name}"


def _backend(name: str) -> str:
    """The pod behind a target (``service:echo-same-node`` -> ``echo-same-node``)."""
    kind, sep, pod = name.partition(":")
    return pod if sep and kind in LB_KINDS else name


def _on_second_node(name: str) -> bool:
    key = _qualify(_backend(name))
    return any(p.second_node for p in PODS if f"{p.namespace}/{p.name}" == key and name)


def _echo_service(name: str) -> Resource:
    """Upstream's ``echo-same-node``/``echo-other-node`` Services (NodePort, port 8080)."""
    return Resource(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "labels": {"kind": "echo"}},
            "spec": {
                "type": "NodePort",
                "selector": {"name": name},
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
            },
        }
    )


def _allocated(client: ResourceClient, deadline: float) -> dict[str, dict[str, Any]]:
    """Each echo Service's spec once the operator gave it a ClusterIP and a nodePort."""
    while True:
        specs = {}
        for name in ECHOES:
            svc = client.get("Service", name, NS)
            spec = (svc.body.get("spec") or {}) if svc is not None else {}
            if spec.get("clusterIP") and (spec.get("ports") or [{}])[0].get("nodePort"):
                specs[name] = spec
        if len(specs) == len(ECHOES):
            return specs
        if time.monotonic() > deadline:
            raise LabError("the operator gave the echo Services no ClusterIP/nodePort: is it up?")
        time.sleep(0.2)


def _kube_proxy_replacement(lab: str) -> bool:
    settings = AgentSettings.from_configmap(read_configmap(cluster.state_dir(lab) / "config.json"))
    return settings.kube_proxy_replacement


def deploy(lab: str) -> Deployment:
    """Create (or reuse) the test namespaces, pods and outside servers."""
    state = cluster.load_state(lab)
    if state is None:
        raise LabError(f"no lab named {lab!r}")
    names = sorted(state.nodes)
    first, second = names[0], names[1] if len(names) > 1 else names[0]
    load_balancing = _kube_proxy_replacement(lab)
    store = open_store(state.store_url)
    try:
        client = ResourceClient(store)
        client.apply(
            [
                Resource(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                    }
                )
                for ns in (NS, NS2)
            ]
            + ([_echo_service(name) for name in ECHOES] if load_balancing else [])
        )
        specs = _allocated(client, time.monotonic() + SYNC_TIMEOUT) if load_balancing else {}
    finally:
        store.close()
    www = cluster.state_dir(lab) / "connectivity-www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("pylium connectivity test\n")
    http = [sys.executable, "-m", "http.server", str(PORT), "--directory", str(www)]
    for pod in PODS:
        if f"{pod.namespace}/{pod.name}" not in state.pods:
            cluster.add_pod(
                lab,
                second if pod.second_node else first,
                pod.name,
                namespace=pod.namespace,
                labels=pod.labels,
                command=[*http, "--bind", "0.0.0.0"] if pod.echo else (),
                host_ports=[PortMapping(host_port=HOST_PORT, container_port=PORT)]
                if pod.echo
                else (),
            )
    state = cluster.load_state(lab)
    assert state is not None
    world = state.subnet.split("/")[0].rsplit(".", 1)[0] + ".1"
    host = state.nodes[first]["address"].split("/")[0]
    for role, netns, address in (
        ("connectivity-world", f"pl-{lab}-fab", world),
        ("connectivity-host", state.nodes[first]["netns"], host),
    ):
        if not procs.alive(state.pids.get(role, 0)):
            cluster.spawn_lab_process(lab, role, [*http, "--bind", address], netns=netns)
    addresses = {key: info["ip"] for key, info in state.pods.items()}
    addresses.update(world=world, host=host)
    sources = {key: info["netns"] for key, info in state.pods.items()}
    sources["host"] = state.nodes[first]["netns"]
    outside = f"pl-{lab}-cl"
    if outside in state.netns:  # labs made before the client namespace existed have none
        sources[OUTSIDE] = outside
        addresses[OUTSIDE] = _address_of(outside)
    cgroups = {
        key: cluster.pod_cgroup(lab, info["node"], info["container_id"])
        for key, info in state.pods.items()
    }
    ports: dict[str, int] = {}
    node_ip = {n: state.nodes[n]["address"].split("/")[0] for n in (first, second)}
    for name, spec in specs.items():
        echo_node = state.pods[f"{NS}/{name}"]["node"]
        node_port = int(spec["ports"][0]["nodePort"])
        addresses[f"service:{name}"] = str(spec["clusterIP"])
        addresses[f"hostport:{name}"] = node_ip[echo_node]
        ports[f"hostport:{name}"] = HOST_PORT
        for where, node in (("local", first), ("remote", second)):
            addresses[f"nodeport-{where}:{name}"] = node_ip[node]
            ports[f"nodeport-{where}:{name}"] = node_port
    return Deployment(
        lab,
        (first, second),
        addresses,
        sources,
        state.subnet,
        ports=ports,
        cgroups=cgroups,
        load_balancing=load_balancing,
    )


def _address_of(netns: str) -> str:
    """The IPv4 address of ``eth0`` in ``netns``."""
    out = subprocess.run(
        ["ip", "-n", netns, "-4", "-o", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[out.index("inet") + 1].split("/")[0]


def health_failures(lab: str) -> list[str]:
    """Every agent probes every node now (``PUT /v1/health/probe``) and must reach them all."""
    state = cluster.load_state(lab)
    assert state is not None
    failures = []
    for node in sorted(state.nodes):
        agent = AgentClient(cluster.agent_socket(node, lab), timeout=60)
        try:
            report = HealthReport.from_json(agent.request("PUT", "/v1/health/probe"))
        except PyliumError as err:
            failures.append(f"{node}: no health report: {err}")
            continue
        seen = {n.name for n in report.nodes}
        if seen != set(state.nodes):
            failures.append(f"{node} probes {sorted(seen)}, the lab has {sorted(state.nodes)}")
        failures += [
            f"{node} cannot reach {n.name} ({n.host_counts()[0]}/{n.host_counts()[1]} host "
            "probes answered)"
            for n in report.unreachable()
        ]
    return failures


EXPECTED_DROP_REASONS = frozenset(
    {
        "Policy denied",
        "Policy denied by denylist",
        "Unsupported L2 protocol",
        "Unsupported L3 protocol",
        "Stale or unroutable IP",
        "Authentication required",
        "Service backend not found",
        "Unsupported protocol for NAT masquerade",
        "Invalid source ip",
        "Unknown L3 target address",
        "Host datapath not ready",
        "Unknown ICMPv4 code",
        "Unknown ICMPv6 code",
        "Forbidden ICMPv6 message",
        "No egress gateway found",
    }
)
"""Drop reasons a connectivity run is expected to cause (upstream cilium-cli's list): denied
checks, pods' IPv6 chatter without IPv6, ETP=Local without a local backend."""


def unexpected_drops(lab: str) -> list[str]:
    """Every agent's ``cilium_drop_count_total`` with a reason outside the expected ones."""
    state = cluster.load_state(lab)
    assert state is not None
    failures = []
    for node in sorted(state.nodes):
        agent = AgentClient(cluster.agent_socket(node, lab), timeout=30)
        try:
            samples = agent.get("/v1/metrics", match="^cilium_drop_count_total$")
        except PyliumError as err:
            failures.append(f"{node}: no drop metrics: {err}")
            continue
        failures += [
            f"{node}: {int(s['value'])} packets dropped: {s['labels'].get('reason')} "
            f"({s['labels'].get('direction', '').lower()})"
            for s in samples
            if s["value"] and s["labels"].get("reason") not in EXPECTED_DROP_REASONS
        ]
    return failures


def _nsenter(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}"]


def _probe(dep: Deployment, check: Check, timeout: float) -> bool:
    key, source = _qualify(check.target), _qualify(check.source)
    args = [dep.addresses[key], str(dep.ports.get(key, PORT)), str(timeout)]
    cgroup = dep.cgroups.get(source)

    def join_cgroup() -> None:
        if cgroup is not None:
            cgroup.mkdir(parents=True, exist_ok=True)
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    done = subprocess.run(
        [*_nsenter(dep.netns[source]), sys.executable, "-S", "-c", CONNECT, *args],
        capture_output=True,
        timeout=timeout + 30,
        preexec_fn=join_cgroup,
    )
    return done.returncode == 0


def wait_for_servers(dep: Deployment, deadline: float = 60.0) -> None:
    """Until every server answers (the echo pods start Python)."""
    # From the first node's host (it reaches everything but pods on other nodes with the
    # tunnel) and from a client for the other node's echo.
    probes = [Check("host", t, True) for t in ("echo-same-node", "world", "host")]
    probes.append(Check("client", "echo-other-node", True))
    if dep.load_balancing:  # until the agents have the echo Services and hostPorts
        probes += [Check("client", f"service:{e}", True) for e in ECHOES]
        probes.append(Check("client", "hostport:echo-same-node", True))
    end = time.monotonic() + deadline
    pending = probes
    while pending:
        pending = [c for c in pending if not _probe(dep, c, 1.0)]
        if pending and time.monotonic() > end:
            names = ", ".join(c.target for c in pending)
            raise LabError(f"connectivity test servers not answering: {names}")
        if pending:
            time.sleep(0.3)


def _agents_in_sync(lab: str, revision: int) -> None:
    """Until every agent's policy maps reflect the store at ``revision``."""
    state = cluster.load_state(lab)
    assert state is not None
    end = time.monotonic() + SYNC_TIMEOUT
    for node in sorted(state.nodes):
        agent = AgentClient(cluster.agent_socket(node, lab), timeout=10)
        while True:
            try:
                if int(agent.get("/v1/policy").get("revision", 0)) >= revision:
                    break
            except PyliumError:
                pass
            if time.monotonic() > end:
                raise LabError(f"agent on {node} did not apply the policies in {SYNC_TIMEOUT}s")
            time.sleep(0.1)


def apply_policies(lab: str, text: str) -> tuple[list[Resource], int]:
    """Validate and apply; returns the objects and the store revision after the apply."""
    state = cluster.load_state(lab)
    assert state is not None
    resources = codec.parse_documents(text, "connectivity-test") if text else []
    store = open_store(state.store_url)
    try:
        if resources:
            ResourceClient(store).apply(resources)
        return resources, store.revision()
    finally:
        store.close()


def remove_policies(lab: str, resources: Sequence[Resource]) -> int:
    state = cluster.load_state(lab)
    assert state is not None
    store = open_store(state.store_url)
    try:
        ResourceClient(store).delete_many([r.key for r in resources])
        return store.revision()
    finally:
        store.close()


Explainer = Callable[[Check], str]


def peer(
    client: ResourceClient,
    snap: cluster_policy.PolicySnapshot,
    dep: Deployment,
    name: str,
    towards: str = "",
) -> cluster_policy.Peer:
    """A check's end as the policy explainer sees it (the host is remote-node ``towards`` a pod
    on the other node)."""
    key = _qualify(_backend(name))
    if key == "host" and dep.nodes[0] != dep.nodes[1] and _on_second_node(towards):
        return cluster_policy.Peer(
            "host (remote-node)",
            int(ReservedIdentity.REMOTE_NODE),
            frozenset({"reserved:remote-node"}),
        )
    if key == "host":
        return cluster_policy.Peer("host", int(ReservedIdentity.HOST), frozenset({"reserved:host"}))
    if key in ("world", OUTSIDE):
        address = ipaddress.IPv4Address(dep.addresses[key])
        labels = cidr.labels_for_address(address, snap.prefixes)
        return cluster_policy.Peer(f"world {address}", int(ReservedIdentity.WORLD), labels)
    namespace, _, pod = key.partition("/")
    cep = client.get("CiliumEndpoint", pod, namespace)
    identity = ((cep.body.get("status") or {}).get("identity") or {}) if cep else {}
    return cluster_policy.Peer(
        key,
        int(identity.get("id", 0)),
        frozenset(identity.get("labels") or ()),
        namespace=namespace,
        pod=pod,
    )


def run(
    lab: str,
    *,
    pattern: str = "",
    timeout: float = 1.5,
    explain_with: Callable[[str, Deployment], Explainer] | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    dep = deploy(lab)
    wait_for_servers(dep)
    explain = explain_with(lab, dep) if explain_with is not None else None
    chosen = [
        s
        for s in scenarios(
            dep.addresses["world"], dep.addresses["host"], dep.fabric, dep.nodes[0] != dep.nodes[1]
        )
        if not pattern or re.search(pattern, s.name)
    ]
    outcomes = []
    for scenario in chosen:
        started = time.monotonic()
        skipped = ""
        if not dep.load_balancing and scenario.checks:
            scenario = replace(
                scenario, checks=tuple(c for c in scenario.checks if not c.load_balanced)
            )
            skipped = "" if scenario.checks else "needs kube-proxy replacement"
        if any(_qualify(c.source) not in dep.netns for c in scenario.checks):
            skipped = "needs the lab's client namespace (recreate the lab)"
        if skipped:
            outcome = Outcome(scenario.name, skipped=skipped)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
            continue
        resources, revision = apply_policies(lab, scenario.policies)
        try:
            _agents_in_sync(lab, revision)
            outcome = Outcome(scenario.name, checks=len(scenario.checks))
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(lambda c: _probe(dep, c, timeout), scenario.checks))
            if scenario.verify is not None:
                outcome.checks += 1
                outcome.failures += scenario.verify(lab)
            for check, result in zip(scenario.checks, results, strict=True):
                if check.expect and not result:
                    # A loaded machine can be slower than the timeout: an allowed connection
                    # gets a second, longer chance (a dropped one never answers anyway).
                    result = _probe(dep, check, timeout * 4)
                if result != check.expect:
                    detail = f"{check}, but it was {'allowed' if result else 'denied'}"
                    if explain is not None:
                        detail += "\n" + explain(check)
                    outcome.failures.append(detail)
        finally:
            if resources:
                _agents_in_sync(lab, remove_policies(lab, resources))
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return outcomes


def summary(outcomes: Sequence[Outcome]) -> str:
    ran = [o for o in outcomes if not o.skipped]
    ok = sum(1 for o in ran if o.ok)
    line = f"{ok}/{len(ran)} tests successful ({sum(o.checks for o in ran)} checks)"
    skipped = len(outcomes) - len(ran)
    return line + (f", {skipped} tests skipped" if skipped else "")


def scenario_names() -> list[str]:
    return [s.name for s in scenarios("192.0.2.1", "192.0.2.2", "192.0.2.0/24")]


def dump_policies(name: str) -> str:
    """The YAML a scenario applies (for ``--print-policies``)."""
    for s in scenarios("<world>", "<host>", "<fabric>"):
        if s.name == name:
            return s.policies
    raise LabError(f"no scenario {name!r}")
