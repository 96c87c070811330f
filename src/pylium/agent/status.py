"""L5: the agent's ``GET /v1/status`` (upstream: ``GET /v1/healthz``, the ``StatusResponse``
that ``cilium-dbg status`` prints) and the controllers' bookkeeping behind its
``Controller Status`` line.

The response keeps upstream's field names (``kvstore``, ``kubernetes``, ``cilium``, ``ipam``,
``routing``, ``masquerading``, ``controllers``, ``kube-proxy-replacement``, ``host-firewall``,
``encryption``, ``cni-chaining``, ``cni-file``, ``hubble``, ``identity-range``, ``cluster``);
each subsystem is ``{state, msg}`` and a failing one carries a ``hint``: what to do next. It is
built from what the agent already knows (the heartbeat controller's last result stands for the
store), so answering never blocks on the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any, Protocol, TypeVar

from pylium import __version__
from pylium.adapters.netlink import podnet
from pylium.adapters.store.api import Store
from pylium.agent.endpoints import EndpointManager
from pylium.agent.health import HealthDaemon
from pylium.agent.hubble import HubbleObserver
from pylium.agent.ipam import IPAM
from pylium.core.health import rfc3339
from pylium.core.identity.numeric import cluster_range
from pylium.core.lb.services import (
    LB_ALGORITHM_ANNOTATION,
    NODE_ANNOTATION,
    NODE_SELECTOR_ANNOTATION,
    TYPE_ANNOTATION,
)
from pylium.model.config import AgentSettings, DSRDispatch, LBAcceleration, LBMode, RoutingMode
from pylium.model.config import LBAlgorithm as ConfigAlgorithm
from pylium.runtime.unixhttp import Request

T = TypeVar("T")

HEARTBEAT_CONTROLLER = "sync-node-heartbeat"
HEARTBEAT_STALE = 10.0
"""Seconds without a heartbeat renewal after which the store counts as failing (the heartbeat
lease's TTL: by then the cluster sees this agent as gone)."""


@dataclass
class ControllerStatus:
    """Upstream's ``ControllerStatus.status`` fields (times as epoch seconds, 0 = never)."""

    name: str
    success_count: int = 0
    failure_count: int = 0
    consecutive_failure_count: int = 0
    last_success: float = 0.0
    last_failure: float = 0.0
    last_failure_msg: str = ""

    @property
    def healthy(self) -> bool:
        return self.consecutive_failure_count == 0

    def to_json(self) -> dict[str, Any]:
        def stamp(t: float) -> str:
            return rfc3339_epoch(t) if t else ""

        return {
            "name": self.name,
            "status": {
                "success-count": self.success_count,
                "failure-count": self.failure_count,
                "consecutive-failure-count": self.consecutive_failure_count,
                "last-success-timestamp": stamp(self.last_success),
                "last-failure-timestamp": stamp(self.last_failure),
                "last-failure-msg": self.last_failure_msg,
            },
        }


def rfc3339_epoch(t: float) -> str:
    return rfc3339(datetime.fromtimestamp(t, UTC))


class Controllers:
    """Named periodic jobs: :meth:`run` calls one and records its success or failure."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._status: dict[str, ControllerStatus] = {}

    def run(self, name: str, fn: Callable[[], T]) -> T:
        try:
            result = fn()
        except Exception as err:
            self.failed(name, str(err))
            raise
        self.succeeded(name)
        return result

    def succeeded(self, name: str) -> None:
        with self._lock:
            st = self._status.setdefault(name, ControllerStatus(name))
            st.success_count += 1
            st.consecutive_failure_count = 0
            st.last_success = self._clock()

    def failed(self, name: str, message: str) -> None:
        with self._lock:
            st = self._status.setdefault(name, ControllerStatus(name))
            st.failure_count += 1
            st.consecutive_failure_count += 1
            st.last_failure = self._clock()
            st.last_failure_msg = message

    def get(self, name: str) -> ControllerStatus | None:
        with self._lock:
            st = self._status.get(name)
            return None if st is None else ControllerStatus(**vars(st))

    def snapshot(self) -> list[ControllerStatus]:
        with self._lock:
            return [ControllerStatus(**vars(s)) for _, s in sorted(self._status.items())]


class Agent(Protocol):
    """What the status needs of :class:`pylium.agent.main.Agent`."""

    @property
    def name(self) -> str: ...
    @property
    def settings(self) -> AgentSettings: ...
    @property
    def controllers(self) -> Controllers: ...
    @property
    def store(self) -> Store: ...
    @property
    def lease(self) -> int: ...
    @property
    def ipam(self) -> IPAM: ...
    @property
    def datapath_error(self) -> str: ...
    @property
    def endpoints(self) -> EndpointManager: ...
    @property
    def started(self) -> float: ...
    @property
    def hubble(self) -> HubbleObserver: ...


def describe_store(store: object) -> str:
    """``local: /path/store.sqlite`` or ``etcd: http://...`` for the KVStore line."""
    path = getattr(store, "path", None)
    if path is not None:
        return f"local: {path}"
    endpoints = getattr(store, "endpoints", None)
    if endpoints:
        return f"etcd: {len(endpoints)} endpoint(s) {', '.join(endpoints)}"
    return type(store).__name__


def _sub(state: str, msg: str = "", hint: str = "") -> dict[str, str]:
    out = {"state": state, "msg": msg}
    if hint:
        out["hint"] = hint
    return out


def _hubble(agent: Agent) -> dict[str, str]:
    """Upstream's line: ``Ok   Current/Max Flows: 4095/4095 (100.00%), Flows/s: 12.34``."""
    if not agent.settings.enable_hubble:
        return _sub("Disabled")
    ring = agent.hubble.ring
    uptime = max(time.time() - agent.hubble.started, 1e-9)
    share = 100.0 * len(ring) / ring.capacity
    msg = (
        f"Current/Max Flows: {len(ring)}/{ring.capacity} ({share:.2f}%), "
        f"Flows/s: {ring.seen / uptime:.2f}"
    )
    if ring.lost:
        msg += f", Lost events: {ring.lost}"
    return _sub("Ok", msg)


def _devices(s: AgentSettings, node_ip: IPv4Address) -> list[tuple[str, str]]:
    """(device, address) of the native devices: ``devices``, or the one holding the node IP."""
    if s.devices:
        return [(name, "") for name in s.devices]
    device = podnet.device_of(node_ip)
    return [(device, str(node_ip))] if device else []


def kube_proxy_replacement(s: AgentSettings, devices: list[tuple[str, str]]) -> dict[str, Any]:
    """Upstream's ``KubeProxyReplacement`` status model from the settings: socket-LB always
    follows ``bpf-lb-sock``/kube-proxy replacement; NodePort, LoadBalancer, externalIPs and
    HostPort are enabled with kube-proxy replacement (upstream's implied ``enable-*``)."""
    kpr = s.kube_proxy_replacement
    direct = s.direct_routing_device or (devices[0][0] if devices else "")
    annotations = [NODE_ANNOTATION, NODE_SELECTOR_ANNOTATION, TYPE_ANNOTATION]
    if s.bpf_lb_algorithm_annotation:
        annotations.append(LB_ALGORITHM_ANNOTATION)
    return {
        "mode": "True" if kpr else "False",
        "deviceList": [{"name": name, "ip": [ip] if ip else []} for name, ip in devices],
        "directRoutingDevice": direct,
        "features": {
            "socketLB": {"enabled": s.socket_lb},
            "bpfSocketLBHostnsOnly": s.bpf_lb_sock_hostns_only,
            # Hubble's socket-LB trace events (trace-sock) are not emitted here.
            "socketLBTracing": {"enabled": False},
            "nodePort": {
                "enabled": kpr,
                "mode": {LBMode.SNAT: "SNAT", LBMode.DSR: "DSR"}.get(s.bpf_lb_mode, "Hybrid"),
                "dsrMode": {DSRDispatch.OPT: "IP Option/Extension", DSRDispatch.IPIP: "IPIP"}.get(
                    s.bpf_lb_dsr_dispatch, "Geneve"
                ),
                "algorithm": "Maglev" if s.bpf_lb_algorithm is ConfigAlgorithm.MAGLEV else "Random",
                "lutSize": s.bpf_lb_maglev_table_size,
                "portMin": s.node_port_range.min,
                "portMax": s.node_port_range.max,
                "acceleration": {
                    LBAcceleration.DISABLED: "None",
                    LBAcceleration.NATIVE: "Native",
                }.get(s.bpf_lb_acceleration, "Best-Effort"),
            },
            "hostPort": {"enabled": kpr},
            "externalIPs": {"enabled": kpr},
            "sessionAffinity": {"enabled": s.socket_lb},
            "gracefulTermination": {"enabled": s.socket_lb},
            "nat46X64": {"enabled": False},
            "annotations": annotations if kpr else [],
        },
    }


def status_response(agent: Agent, health: HealthDaemon) -> dict[str, Any]:
    """The StatusResponse of this agent, now."""
    s = agent.settings
    controllers = agent.controllers.snapshot()
    beat = agent.controllers.get(HEARTBEAT_CONTROLLER)
    store_desc = describe_store(agent.store)
    store_errors = [
        c for c in controllers if not c.healthy and c.last_failure_msg.startswith("store")
    ]
    stale = beat is not None and time.time() - beat.last_success > HEARTBEAT_STALE
    if (beat is not None and not beat.healthy) or stale or store_errors:
        why = (
            beat.last_failure_msg
            if beat is not None and not beat.healthy
            else store_errors[0].last_failure_msg
            if store_errors
            else "no heartbeat renewal"
        )
        since = (
            f" (heartbeat last renewed {int(time.time() - beat.last_success)}s ago)"
            if beat is not None and beat.last_success
            else ""
        )
        kvstore = _sub(
            "Failure",
            f"{store_desc}: {why}{since}",
            "the agent cannot reach the store: check that it is up and reachable from the "
            "node (pylium lab status; etcd.log for an etcd lab); the datapath keeps "
            "forwarding meanwhile",
        )
    else:
        kvstore = _sub("Ok", f"{store_desc}, heartbeat lease {agent.lease:x}")

    usage = agent.ipam.usage()
    if agent.ipam.ready.is_set():
        ipam = _sub("Ok", usage.status_line())
    else:
        ipam = _sub(
            "Failure",
            f"no pod CIDR yet ({s.ipam.value})",
            f"the operator assigns it: check `pylium status` (Operator) and "
            f"`pylium get ciliumnode {agent.name} -o yaml` (status.ipam.operator-status)",
        )
    if agent.datapath_error:
        cilium = _sub(
            "Failure",
            agent.datapath_error,
            "the datapath did not start: read the node's agent.log, fix, then "
            f"`pylium lab restart {agent.name}`",
        )
    elif agent.endpoints.obj is None:
        cilium = _sub("Warning", f"{__version__}: datapath starting (waiting for the pod CIDR)")
    else:
        cilium = _sub("Ok", __version__)
    tunnel = s.routing_mode is RoutingMode.TUNNEL
    identities = cluster_range(s.cluster_id)
    report = health.report() if health.enabled else None
    if not health.enabled:
        health_state = _sub("Disabled", "enable-health-checking=false")
    elif health.error:
        health_state = _sub(
            "Failure",
            health.error,
            f"port {health.port} must be free on {health.address} in the node's namespace",
        )
    else:
        health_state = _sub("Ok")
    cni_path = s.write_cni_conf_when_ready
    return {
        "kvstore": kvstore,
        "kubernetes": _sub("Disabled", "no Kubernetes API server: resources come from the kvstore"),
        "kube-proxy-replacement": kube_proxy_replacement(
            s, _devices(s, agent.endpoints.node_ip) if agent.endpoints.obj is not None else []
        ),
        "host-firewall": {"mode": "Enabled" if s.enable_host_firewall else "Disabled"},
        "srv6": {"enabled": False},
        "cni-chaining": {"mode": s.cni_chaining_mode.value},
        "cni-file": {
            "path": cni_path,
            "msg": f"successfully wrote CNI configuration file to {cni_path}"
            if cni_path and agent.endpoints.obj is not None
            else "",
        },
        "cilium": cilium,
        "cilium-health": health_state,
        "ipam": {**ipam, "mode": s.ipam.value, "ipv4": [str(c) for c in usage.cidrs]},
        "routing": {
            "inter-host-routing-mode": "Tunnel" if tunnel else "Native",
            "tunnel-protocol": s.tunnel_protocol.value if tunnel else "",
            "intra-host-routing-mode": agent.endpoints.host_routing.mode,
        },
        "attach-mode": "Legacy TC",
        "datapath-mode": "veth",
        "masquerading": {
            "enabled": s.enable_ipv4_masquerade,
            "mode": "IPTables (nftables)",
            "enabledProtocols": {"ipv4": s.enable_ipv4_masquerade, "ipv6": False},
        },
        "controllers": [c.to_json() for c in controllers],
        "proxy": None,
        "identity-range": {
            "min-identity": identities.start,
            "max-identity": identities.stop - 1,
        },
        "hubble": _hubble(agent),
        "encryption": {"mode": "Disabled"},
        "cluster": {
            "self": agent.name,
            "ciliumHealth": health_state,
            "health": report.to_json() if report is not None else None,
        },
        "node": agent.name,
        "uptime-seconds": round(time.time() - agent.started, 1),
    }


def handler(agent: Agent, health: HealthDaemon) -> Callable[[Request], tuple[int, Any]]:
    def get(request: Request) -> tuple[int, Any]:
        return 200, status_response(agent, health)

    return get
