"""L5: ``pylium-agent``, one per node.

The agent registers its node — a ``Node`` (v1) and a ``CiliumNode`` (cilium.io/v2) with its
InternalIP — keeps a lease-bound heartbeat in the store so that the cluster sees when it dies,
hands out pod IPs from the node's CIDRs (:mod:`pylium.agent.ipam`), allocates security
identities (:mod:`pylium.adapters.identities`) and serves its REST API on a unix socket
(``/v1/healthz``, ``/v1/ipam``, ``/v1/identity``). Endpoints and the datapath are wired in by the
following issues.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import re
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pylium import __version__
from pylium.adapters import fsmount
from pylium.adapters.bpf import bpffs, probes
from pylium.adapters.identities import IdentityAllocator
from pylium.adapters.maps import metrics as metrics_map
from pylium.adapters.maps import nat
from pylium.adapters.netlink import podnet
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.adapters.store.factory import open_store
from pylium.agent import cniconf
from pylium.agent import metrics as agent_metrics
from pylium.agent import status as agent_status
from pylium.agent.ctgc import ConntrackGC
from pylium.agent.endpoints import EndpointManager
from pylium.agent.eni import ENIRouting
from pylium.agent.health import HealthDaemon
from pylium.agent.hubble import HubbleObserver
from pylium.agent.ipam import IPAM
from pylium.agent.policy import PolicyManager
from pylium.agent.services import ServiceManager, lb_settings
from pylium.base.errors import (
    AllocationError,
    ConfigError,
    PyliumError,
    StoreError,
    ValidationError,
)
from pylium.core.identity.labels import Label, LabelFilter, identity_labels
from pylium.core.ipam.hostscope import ROUTER_OWNER, Address
from pylium.core.ipam.multipool import DEFAULT_POOL, select_pool
from pylium.core.settings.checks import (
    HostRouting,
    datapath_lb_mode,
    host_routing,
    lb_mode_notes,
)
from pylium.model.config import VXLAN_PORT, AgentSettings, IPAMMode, RoutingMode, TunnelProtocol
from pylium.model.resource import Resource
from pylium.runtime.daemon import read_configmap, setup_logging, stop_on_signals
from pylium.runtime.nodekeys import HEARTBEAT_PREFIX
from pylium.runtime.policy import policy_config
from pylium.runtime.unixhttp import (
    HttpError,
    Request,
    Router,
    UnixHttpServer,
    bad_field,
    body_object,
    field_of,
    string_map,
)
from pylium.runtime.wakeup import Wakeup

log = logging.getLogger("pylium.agent")

HEARTBEAT_TTL = 10
AGENT_DEVICES = frozenset({"lo", "cilium_host", "cilium_net", "cilium_vxlan"})
"""The node's own devices: never a pod's."""
IFNAME = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def node_resources(
    name: str, ip: ipaddress.IPv4Address, router: Address | None = None
) -> tuple[Resource, dict[str, Any]]:
    """The Node this agent registers, and the CiliumNode spec fields it owns: its addresses,
    the router IP (cilium_host's) as ``CiliumInternalIP`` once IPAM has it, as upstream."""
    node = Resource(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
            },
            "spec": {},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": str(ip)},
                    {"type": "Hostname", "address": name},
                ]
            },
        }
    )
    addresses = [{"type": "InternalIP", "ip": str(ip)}]
    if router is not None:
        addresses.append({"type": "CiliumInternalIP", "ip": str(router)})
    return node, {"addresses": addresses}


class Agent:
    def __init__(
        self,
        *,
        name: str,
        ip: ipaddress.IPv4Address,
        store: Store,
        settings: AgentSettings,
        state_dir: Path,
        bpf_pin_dir: Path,
        cgroup_path: Path | None = None,
    ) -> None:
        self.name = name
        self.ip = ip
        self.store = store
        self.client = ResourceClient(store)
        self.settings = settings
        self.state_dir = state_dir
        self.lease = 0
        self.started = time.time()
        self.ipam = IPAM(
            store,
            name,
            settings.ipam,
            pre_allocate=settings.ipam_pre_allocate,
            min_allocate=settings.ipam_min_allocate,
            max_allocate=settings.ipam_max_allocate,
            cni_conf=settings.read_cni_conf,
        )
        self.identities = IdentityAllocator(store, name, cluster_id=settings.cluster_id)
        native = settings.ipv4_native_routing_cidr
        self.eni_routing = (
            ENIRouting(
                self.client,
                name,
                masquerade=settings.enable_ipv4_masquerade,
                native_routing_cidr=str(native) if native is not None else "",
                masquerade_interfaces=settings.egress_masquerade_interfaces,
            )
            if settings.ipam is IPAMMode.ENI
            else None
        )
        self.endpoints = EndpointManager(
            store=store,
            node=name,
            node_ip=ip,
            ipam=self.ipam,
            identities=self.identities,
            bpf_root=bpf_pin_dir,
            cluster=settings.cluster_name,
            label_filter=LabelFilter.from_user(settings.labels),
            tunnel_port=tunnel_port(settings),
            host_firewall=settings.enable_host_firewall,
            nodeport=settings.kube_proxy_replacement,
            mtu=settings.mtu,
            monitor_aggregation=settings.monitor_aggregation.level,
            direct_routes=settings.routing_mode is RoutingMode.NATIVE
            and settings.auto_direct_node_routes,
            skip_unreachable=settings.direct_routing_skip_unreachable,
            masquerade_keep=masquerade_keep(settings),
            masquerade_interfaces=settings.egress_masquerade_interfaces,
            eni_routing=self.eni_routing,
            host_routing=resolve_host_routing(settings),
        )
        self.datapath_error = ""
        self.policy = PolicyManager(self.client, policy_config(settings))
        self.hubble = HubbleObserver(
            node=name,
            cluster=settings.cluster_name,
            capacity=settings.hubble_event_buffer_capacity,
            attribution=self.policy.attribution,
            labels_of=self.policy.cache.labels_of,
        )
        self.services = ServiceManager(
            self.client,
            node=name,
            node_addresses=(ip,),
            bpf_root=bpf_pin_dir,
            cgroup_path=cgroup_path or Path(settings.cgroup_root),
            socket_lb=settings.socket_lb and not settings.bpf_lb_sock_hostns_only,
            kube_proxy_replacement=settings.kube_proxy_replacement,
            settings=lb_settings(settings),
            node_port_range=(settings.node_port_range.min, settings.node_port_range.max),
            map_max=settings.bpf_lb_map_max,
            endpoints=self.endpoints,
        )
        host_options = self.services.host_load_options()
        host_options["constants"]["nodeport_mode"] = datapath_lb_mode(settings)
        self.endpoints.host_load_options = host_options
        self.services_error = ""
        self._policy_lock = threading.Lock()
        self.controllers = agent_status.Controllers()

    def register(self) -> None:
        node, cn_spec = node_resources(self.name, self.ip, self.ipam.router_ip)

        def merge_node(body: dict[str, Any] | None) -> dict[str, Any]:
            if body is None:
                return dict(node.body)
            body["metadata"].setdefault("labels", {}).update(node.labels)
            body["status"] = node.body["status"]  # spec (podCIDRs) stays the user's
            return body

        self.client.mutate("Node", self.name, fn=merge_node)

        def merge(body: dict[str, Any] | None) -> dict[str, Any]:
            body = body or {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNode",
                "metadata": {"name": self.name},
                "spec": {},
            }
            spec = body.setdefault("spec", {})
            kept = []
            if self.ipam.router_ip is None:  # a restart before IPAM: keep the published one
                kept = [
                    a for a in spec.get("addresses") or [] if a.get("type") == "CiliumInternalIP"
                ]
            spec.update(cn_spec, addresses=cn_spec["addresses"] + kept)  # keep the operator's
            return body

        self.client.mutate("CiliumNode", self.name, fn=merge)
        log.info("registered node", extra={"node": self.name, "ip": str(self.ip)})

    def _sync_eni_masquerade(self) -> None:
        if self.eni_routing is not None:
            pods = [c for c in self.ipam.usage().cidrs if isinstance(c, ipaddress.IPv4Network)]
            self.eni_routing.sync_masquerade(pods)

    def heartbeat(self) -> None:
        """Renew the heartbeat lease, re-creating it after an expiry."""
        if self.lease:
            try:
                self.store.keepalive(self.lease)
                return
            except StoreError:
                log.warning("heartbeat lease expired; re-registering")
        self.lease = self.store.grant_lease(HEARTBEAT_TTL)
        self.store.put(HEARTBEAT_PREFIX + self.name, str(self.ip).encode(), lease=self.lease)

    def _ip(self, request: Request) -> Address:
        try:
            return ipaddress.ip_address(request.params["ip"])
        except ValueError as err:
            raise bad_field("ip", f"invalid IP address {request.params['ip']!r}") from err

    def _require_ipam(self) -> None:
        if not self.ipam.ready.is_set():
            raise HttpError(503, f"IPAM not ready: node {self.name} has no pod CIDR yet")

    def ipam_allocate(self, request: Request) -> tuple[int, Any]:
        """``POST /v1/ipam?owner=ns/pod``: the next free IP, as upstream's IPAMResponse."""
        self._require_ipam()
        owner = request.query.get("owner", "")
        if not owner:
            raise bad_field("query.owner", "is required (namespace/pod)")
        pool = request.query.get("pool", "")
        if pool and pool != DEFAULT_POOL and self.settings.ipam is not IPAMMode.MULTI_POOL:
            raise bad_field("query.pool", f"pools need multi-pool IPAM, not {self.settings.ipam}")
        try:
            pool = request.query.get("pool") or self._pool_for(owner)
            ip = self.ipam.allocate(owner, pool)
        except AllocationError as err:
            raise HttpError(502, str(err)) from err
        return 201, self._ipam_response(ip, pool)

    def _pool_for(self, owner: str) -> str:
        """multi-pool: the pod's pool from its and its namespace's annotations."""
        if self.settings.ipam is not IPAMMode.MULTI_POOL:
            return DEFAULT_POOL
        namespace, _, name = owner.partition("/")
        pod = self.client.get("Pod", name, namespace) if name else None
        ns = self.client.get("Namespace", namespace)
        pools = [r.name for r in self.client.list("CiliumPodIPPool")[0]]
        return select_pool(
            dict(pod.metadata.get("annotations") or {}) if pod else {},
            dict(ns.metadata.get("annotations") or {}) if ns else {},
            pools,
        )

    def _ipam_response(self, ip: Address, pool: str = DEFAULT_POOL) -> dict[str, Any]:
        usage = self.ipam.usage(pool)
        router = str(self.ipam.router_ip)
        return {
            "address": {"ipv4": str(ip)},
            "ipv4": {"ip": str(ip), "cidrs": [str(c) for c in usage.cidrs], "gateway": router},
            "host-addressing": {"ipv4": {"ip": router, "enabled": True}},
            "pool": pool,
            "mtu": self.endpoints.mtu or 1500,
        }

    def ipam_claim(self, request: Request) -> tuple[int, Any]:
        """``POST /v1/ipam/{ip}?owner=``: allocate a specific IP."""
        self._require_ipam()
        ip = self._ip(request)
        try:
            self.ipam.allocate_specific(ip, request.query.get("owner", ""))
        except AllocationError as err:
            raise HttpError(403, str(err)) from err
        return 200, self._ipam_response(ip)

    def ipam_release(self, request: Request) -> tuple[int, Any]:
        """``DELETE /v1/ipam/{ip}``: releasing an unknown IP is harmless."""
        self._require_ipam()
        return 200, {"released": self.ipam.release(self._ip(request))}

    def ipam_get(self, request: Request) -> tuple[int, Any]:
        """``GET /v1/ipam/{ip}``: who holds it (the CNI CHECK)."""
        self._require_ipam()
        ip = self._ip(request)
        owner = self.ipam.owner_of(ip)
        if owner is None:
            raise HttpError(404, f"{ip} is not allocated on node {self.name}")
        return 200, {"ip": str(ip), "owner": owner}

    def ipam_status(self, request: Request) -> tuple[int, Any]:
        usage = self.ipam.usage()
        pools = {}
        for pool in self.ipam.pool_names():
            u = self.ipam.usage(pool)
            pools[pool] = {
                "used": u.used,
                "capacity": u.capacity,
                "cidrs": [str(c) for c in u.cidrs],
            }
        return 200, {
            "status": usage.status_line(),
            "used": usage.used,
            "capacity": usage.capacity,
            "cidrs": [str(c) for c in usage.cidrs],
            "pools": pools,
            "ready": self.ipam.ready.is_set(),
        }

    def identity_allocate(self, request: Request) -> tuple[int, Any]:
        """``POST /v1/identity``: body ``{"labels": ["k8s:app=web", ...]}``, or a pod's
        ``{"pod-labels": {...}, "namespace": "ns", "namespace-labels": {...},
        "service-account": "sa"}`` filtered to its identity-relevant labels."""
        body = body_object(request)
        if "labels" in body:
            given = field_of(body, "labels", list, required=True)
            for i, text in enumerate(given):
                if not isinstance(text, str) or not Label.parse(text).key:
                    raise bad_field(
                        f"labels[{i}]", f"{text!r} is not a label ([source:]key[=value])"
                    )
            labels = [Label.parse(text) for text in given]
        elif "pod-labels" in body:
            labels = list(
                identity_labels(
                    pod_labels=string_map(body, "pod-labels"),
                    namespace=field_of(body, "namespace", str) or "default",
                    namespace_labels=string_map(body, "namespace-labels"),
                    service_account=field_of(body, "service-account", str) or "default",
                    cluster=self.settings.cluster_name,
                    label_filter=LabelFilter.from_user(self.settings.labels),
                )
            )
        else:
            raise bad_field("labels", 'give "labels" or "pod-labels" in the request body')
        if not labels:
            raise bad_field("labels", "an identity needs at least one label")
        try:
            identity = self.identities.allocate(labels)
        except AllocationError as err:
            raise HttpError(502, str(err)) from err
        return 201, {"id": identity, "labels": [str(lb) for lb in sorted(labels)]}

    def identity_release(self, request: Request) -> tuple[int, Any]:
        text = request.params["id"]
        if not (text.isascii() and text.isdecimal() and len(text) <= 10):
            raise bad_field("id", f"invalid identity {text!r} (a number)")
        identity = int(text)
        return 200, {"id": identity, "references-on-node": self.identities.release(identity)}

    def endpoint_put(self, request: Request) -> tuple[int, Any]:
        """``PUT /v1/endpoint/{id}``: the CNI plugin's EndpointChangeRequest (id: container ID)."""
        if self.datapath_error or self.endpoints.obj is None:
            raise HttpError(503, f"datapath not ready: {self.datapath_error or 'starting'}")
        body = body_object(request)
        self._check_endpoint_request(body)
        try:
            record = self.endpoints.create(request.params["id"], body)
            self.sync_policy()  # the pod starts with its policy in place, not unenforced
        except ValidationError:
            raise  # a 400 naming the field
        except PyliumError as err:
            raise HttpError(500, str(err)) from err
        return 201, asdict(record)

    def _check_endpoint_request(self, body: dict[str, Any]) -> None:
        """Every field the endpoint is made from is checked before anything is written: a
        refused request changes nothing."""
        host = field_of(body, "interface-name", str, required=True)
        if not IFNAME.fullmatch(host) or host in AGENT_DEVICES:
            raise bad_field("interface-name", f"{host!r} is not a pod's host-side interface")
        addressing = field_of(body, "addressing", dict, required=True)
        text = addressing.get("ipv4")
        if not isinstance(text, str):
            raise bad_field("addressing.ipv4", "is required (a string)")
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError as err:
            raise bad_field("addressing.ipv4", f"{text!r} is not an IPv4 address") from err
        if self.ipam.owner_of(ip) in (None, ROUTER_OWNER):
            raise bad_field("addressing.ipv4", f"{ip} is not allocated to a pod on {self.name}")
        mac = field_of(body, "mac", str, required=True)
        if not MAC.fullmatch(mac):
            raise bad_field("mac", f"{mac!r} is not a MAC address")
        for name in ("k8s-namespace", "k8s-pod-name", "container-interface-name"):
            if field_of(body, name, str) == "":
                raise bad_field(name, "must not be empty")
        string_map(body, "labels")
        if podnet.link_info(host) is None:  # checked last: the one look-up in the kernel
            raise bad_field("interface-name", f"no device {host!r} on node {self.name}")

    def sync_policy(self) -> None:
        """Policy maps follow the store's policies, identities and pods (and the endpoints);
        the CIDR identities they need go to the ipcache."""
        if self.endpoints.obj is None:
            return
        with self._policy_lock:
            if self.policy.sync(self.endpoints.local_endpoints()):
                self.endpoints.cidr_identities = dict(self.policy.cidr_identities)
        if self.settings.enable_hubble:
            self.hubble.refresh(
                self.client,
                {ipaddress.IPv4Address(r.ipv4): r.endpoint_id for r in self.endpoints.records()},
            )

    def endpoint_delete(self, request: Request) -> tuple[int, Any]:
        """``DELETE /v1/endpoint/{id}``: unknown endpoints are not an error (CNI DEL retries)."""
        return 200, {"deleted": self.endpoints.delete(request.params["id"])}

    def endpoint_get(self, request: Request) -> tuple[int, Any]:
        for record in self.endpoints.records():
            if record.container_id == request.params["id"]:
                return 200, asdict(record)
        raise HttpError(404, f"endpoint {request.params['id']} not found on node {self.name}")

    def policy_status(self, request: Request) -> tuple[int, Any]:
        """``GET /v1/policy``: the store revision the policy maps are in sync with (every
        policy, identity and pod written up to it is enforced) and per-endpoint enforcement."""
        return 200, {
            "revision": self.policy.revision,
            "endpoints": {str(k): asdict(v) for k, v in self.policy.status().items()},
        }

    def endpoint_list(self, request: Request) -> tuple[int, Any]:
        enforced = self.policy.status()
        out = []
        for record in self.endpoints.records():
            item = asdict(record)
            status = enforced.get(record.endpoint_id)
            item["policy"] = asdict(status) if status else None
            out.append(item)
        return 200, out

    def _start_datapath(self, stop: threading.Event) -> None:
        if not self.ipam.wait_for_cidrs(stop):
            return
        try:
            self.services.prepare_pins()  # before bpf_host loads the shared LB maps
            self.endpoints.start()
            self._start_conntrack_gc(stop)
            self.register()  # now with the router IP (CiliumInternalIP)
            self.policy.attach(self.endpoints.policy_maps, self.endpoints.config_map)
            if self.settings.enable_hubble and self.endpoints.obj is not None:
                self.hubble.attach(self.endpoints.obj, stop)
                port = self.settings.hubble_listen_address.rpartition(":")[2] or "4244"
                self.hubble.serve(
                    self.settings.hubble_listen_address,
                    self.state_dir / "hubble.sock",
                    f"{self.ip}:{port}",
                )
            self.sync_policy()
            self._start_services(stop)
            # Ready: now the runtime may send pods (upstream writes the file only then).
            cniconf.install(self.settings, self.state_dir / "pylium.sock")
        except PyliumError as err:
            self.datapath_error = str(err)
            log.error("datapath failed to start: %s", err)

    def _start_conntrack_gc(self, stop: threading.Event) -> None:
        """The conntrack and NAT garbage collector, over the maps every program shares."""
        if self.endpoints.obj is None:
            return
        gc = ConntrackGC(
            self.endpoints.ct_maps,
            nat.NATMap(self.endpoints.obj.map_fd(nat.NAME)),
            interval=self.settings.conntrack_gc_interval.total_seconds(),
            max_interval=self.settings.conntrack_gc_max_interval.total_seconds(),
        )
        threading.Thread(target=gc.run, args=(stop,), name="ct-gc", daemon=True).start()

    def _start_services(self, stop: threading.Event) -> None:
        """bpf_sock and the service maps; a failure here leaves pod networking up."""
        try:
            self.services.start()
        except PyliumError as err:
            self.services_error = str(err)
            log.error("services datapath failed to start: %s", err)
            return
        threading.Thread(
            target=self._sync_services, args=(stop,), name="services", daemon=True
        ).start()

    def _sync_services(self, stop: threading.Event) -> None:
        while True:
            try:
                self.services.sync()
            except PyliumError as err:
                log.warning("service sync: %s", err)
                stop.wait(0.5)  # a failing store: no busy loop
            # Woken by the store watch at once (a change is in the maps within milliseconds),
            # else every second for the periodic resync and to notice ``stop``.
            self.services.wait_for_change(1.0)
            if stop.is_set():
                return

    def service_list(self, request: Request) -> tuple[int, Any]:
        """``GET /v1/service``: the frontends in the maps, as ``cilium-dbg service list``
        prints them (``text``), and the store revision they are in sync with."""
        if self.services.maps is None:
            raise HttpError(503, f"services not ready: {self.services_error or 'starting'}")
        return 200, {
            "revision": self.services.revision,
            "text": self.services.service_list(),
            "frontends": [str(f) for f in self.services.frontends()],
            "problems": self.services.problems,
        }

    def metrics_sources(self) -> agent_metrics.LiveSources:
        """What the ``cilium_*`` metrics read at each scrape."""

        def metrics_fd() -> int | None:
            obj = self.endpoints.obj
            return obj.map_fd(metrics_map.NAME) if obj is not None else None

        return agent_metrics.LiveSources(
            client=self.client,
            metrics_fd=metrics_fd,
            endpoints=lambda: len(self.endpoints.records()),
            identities=lambda: list(self.policy.cache.identities),
            ip_addresses=lambda: {"ipv4": self.ipam.usage().used},
            pin_dir=self.endpoints.bpf_root,
        )

    def healthz(self, request: Request) -> tuple[int, Any]:
        return 200, {
            "node": self.name,
            "version": __version__,
            "uptime-seconds": round(time.time() - self.started, 1),
            "kvstore": {"state": "Ok", "lease": self.lease},
            "ipam": {"mode": self.settings.ipam.value, "status": self.ipam.usage().status_line()},
            "routing-mode": self.settings.routing_mode.value,
            "datapath": {
                "state": "Failure"
                if self.datapath_error
                else ("Ok" if self.endpoints.obj else "Starting"),
                "error": self.datapath_error,
                "endpoints": len(self.endpoints.records()),
            },
        }

    def run(self, stop: threading.Event) -> None:
        self.register()
        self.heartbeat()
        router = Router()
        router.add("GET", "/v1/healthz", self.healthz)
        router.add("GET", "/v1/ipam", self.ipam_status)
        router.add("POST", "/v1/ipam", self.ipam_allocate)
        router.add("POST", "/v1/ipam/{ip}", self.ipam_claim)
        router.add("GET", "/v1/ipam/{ip}", self.ipam_get)
        router.add("DELETE", "/v1/ipam/{ip}", self.ipam_release)
        router.add("PUT", "/v1/endpoint/{id}", self.endpoint_put)
        router.add("GET", "/v1/endpoint/{id}", self.endpoint_get)
        router.add("DELETE", "/v1/endpoint/{id}", self.endpoint_delete)
        router.add("GET", "/v1/endpoint", self.endpoint_list)
        router.add("GET", "/v1/policy", self.policy_status)
        router.add("GET", "/v1/flows", self.hubble.flows_handler)
        router.add("GET", "/v1/hubble/status", self.hubble.status_handler)
        router.add("POST", "/v1/identity", self.identity_allocate)
        router.add("GET", "/v1/service", self.service_list)
        router.add("DELETE", "/v1/identity/{id}", self.identity_release)
        health = HealthDaemon(
            node=self.name,
            address=str(self.ip),
            store=self.store,
            lease=lambda: self.lease,
            port=self.settings.cluster_health_port,
            enabled=self.settings.enable_health_checking,
        )
        router.add("GET", "/v1/status", agent_status.handler(self, health))
        router.add("GET", "/v1/health", health.status_handler)
        router.add("PUT", "/v1/health/probe", health.probe_handler)
        api = UnixHttpServer(self.state_dir / "pylium.sock", router)
        metrics = agent_metrics.start(
            self.settings,
            self.metrics_sources(),
            self.hubble.listeners.append,
            lost_events=lambda: self.hubble.ring.lost,
        )
        router.add("GET", "/v1/metrics", metrics.list_handler)
        api.start()
        health.start(stop)
        ipam_thread = threading.Thread(
            target=self._start_datapath, args=(stop,), name="datapath", daemon=True
        )
        ipam_thread.start()
        last_beat = 0.0
        # Policies, identities, pods, nodes: react to a change at once, not at the next tick.
        wake = Wakeup(self.store, self.client.root + "/").start()
        try:
            while not stop.is_set():
                wake.wait(1.0)
                if stop.is_set():
                    break
                try:
                    if self.ipam.ready.is_set():
                        self.controllers.run("ipam-sync-cidrs", self.ipam.sync_cidrs)
                        self.controllers.run("policy-sync", self.sync_policy)
                        self.controllers.run("sync-remote-endpoints", self.endpoints.sync_remote)
                        if self.eni_routing is not None:
                            self.controllers.run("eni-masquerade", self._sync_eni_masquerade)
                    if time.monotonic() - last_beat >= HEARTBEAT_TTL / 3:
                        self.controllers.run(agent_status.HEARTBEAT_CONTROLLER, self.heartbeat)
                        last_beat = time.monotonic()
                except PyliumError as err:
                    log.warning("agent loop: %s", err)
        finally:
            health.stop()
            wake.stop()
            api.stop()
            metrics.stop()
            self.hubble.stop()
            self.endpoints.stop()
            cniconf.uninstall(self.settings)
            if self.lease:
                try:
                    self.store.revoke(self.lease)
                except StoreError as err:
                    log.warning("could not revoke heartbeat lease: %s", err)


def tunnel_port(settings: AgentSettings) -> int:
    """The UDP port of the tunnel, 0 in native routing. Geneve is refused: this kernel (and
    the lab's) has no Geneve driver, so only VXLAN can carry the tunnel."""
    if settings.routing_mode is not RoutingMode.TUNNEL:
        return 0
    if settings.tunnel_protocol is not TunnelProtocol.VXLAN:
        raise ConfigError(
            "tunnel-protocol",
            "geneve needs the kernel's Geneve driver, which this kernel lacks; use vxlan",
        )
    return settings.tunnel_port or VXLAN_PORT


def resolve_host_routing(settings: AgentSettings) -> HostRouting:
    """BPF host routing, or Legacy with upstream's log line saying why."""
    try:
        missing = probes.missing_host_routing_helpers()
    except PyliumError as err:
        missing = [f"unknown ({err})"]
    routing = host_routing(
        settings, masquerade_keep=masquerade_keep(settings), missing_helpers=missing
    )
    if routing.reason:
        log.info(
            "%s Falling back to legacy host routing (enable-host-legacy-routing=true).",
            routing.reason,
        )
    return routing


def masquerade_keep(settings: AgentSettings) -> tuple[ipaddress.IPv4Network, ...]:
    """Destinations pod traffic keeps its source address for (empty: no masquerading): the
    native-routing CIDR when set, else the cluster's pod pools. ENI IPAM masquerades through
    :class:`ENIRouting` (beyond the VPC's CIDRs, which only the operator knows)."""
    if not settings.enable_ipv4_masquerade or settings.ipam is IPAMMode.ENI:
        return ()
    if settings.ipv4_native_routing_cidr is not None:
        return (settings.ipv4_native_routing_cidr,)
    return tuple(settings.cluster_pool_ipv4_cidr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pylium-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--node-ip", required=True, help="the node's InternalIP")
    parser.add_argument("--store", required=True, help="local:PATH or etcd:URL")
    parser.add_argument("--config", type=Path, help="cilium-config as a JSON object")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--bpf-pin-dir",
        type=Path,
        help="where this node's maps are pinned (default <bpf-root>/pylium)",
    )
    parser.add_argument(
        "--write-cni-conf-when-ready", help="overrides the ConfigMap key of the same name"
    )
    parser.add_argument("--cni-bin-path", help="overrides the ConfigMap key of the same name")
    parser.add_argument(
        "--cgroup-subtree",
        default="",
        help="the cgroup under cgroup-root holding this node's pods, where socket-LB attaches "
        "(default: cgroup-root itself; the lab gives pylium-lab-<lab>/<node>)",
    )
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.debug)
    try:
        ip = ipaddress.IPv4Address(args.node_ip)
    except ValueError as err:
        print(f"Error: --node-ip: {err}", file=sys.stderr)
        sys.exit(1)
    stop = stop_on_signals()
    try:
        settings = AgentSettings.from_configmap(read_configmap(args.config))
        if args.write_cni_conf_when_ready is not None:
            settings = dataclasses.replace(
                settings, write_cni_conf_when_ready=args.write_cni_conf_when_ready
            )
        if args.cni_bin_path is not None:
            settings = dataclasses.replace(settings, cni_bin_path=args.cni_bin_path)
        store = open_store(args.store)
        store.revision()  # fail now, with a clear message, if the store is unreachable
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    bpf_root = Path(settings.bpf_root)
    pin_dir = args.bpf_pin_dir or bpf_root / "pylium"
    try:
        bpffs.ensure_mounted(bpf_root, auto_mount=settings.bpf_auto_mount)
        fsmount.ensure_mounted(
            Path(settings.cgroup_root), fsmount.CGROUP2, auto_mount=settings.cgroup_auto_mount
        )
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
    log.info("starting pylium-agent %s", __version__, extra={"node": args.node_name})
    for note in lb_mode_notes(settings):
        log.warning("%s", note)
    try:
        Agent(
            name=args.node_name,
            ip=ip,
            store=store,
            settings=settings,
            state_dir=args.state_dir,
            bpf_pin_dir=pin_dir,
            cgroup_path=Path(settings.cgroup_root) / args.cgroup_subtree,
        ).run(stop)
    except PyliumError as err:
        log.error("agent failed: %s", err)
        sys.exit(1)
    finally:
        store.close()
    log.info("stopped")
