"""L5: the agent's endpoints and the node's datapath.

Start-up (once the node has its router IP): the ``cilium_host``/``cilium_net`` pair carrying
the router IP, the forwarding sysctls, and the ``bpf_lxc`` object loaded with its maps pinned
under the node's BPF root (so traffic keeps flowing while the agent restarts).

An endpoint is created by the CNI plugin after it has plumbed the pod's veth
(``PUT /v1/endpoint/{container-id}``): the agent resolves the pod's security identity, writes
the endpoints map and the ipcache, attaches ``bpf_lxc`` to the host-side veth, records the
endpoint in the store (``endpoints/<node>/<container-id>``) and publishes a CiliumEndpoint.
Deletion undoes each step, and releases the IP. After a restart, recorded endpoints are
re-programmed; ones whose veth has vanished are cleaned up.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pylium.adapters.bpf import tc
from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.identities import IdentityAllocator
from pylium.adapters.maps import config, ct, ipcache
from pylium.adapters.maps import endpoints as epmap
from pylium.adapters.maps import policy as policy_maps
from pylium.adapters.netlink import masquerade, podnet
from pylium.adapters.netlink import netns as nl
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.agent.eni import ENIRouting
from pylium.agent.ipam import IPAM
from pylium.agent.policy import LocalEndpoint
from pylium.base.errors import DatapathError, Location, PyliumError, ValidationError
from pylium.core.cni import CniError, parse_port_mappings
from pylium.core.identity.labels import Label, LabelFilter, host_labels, identity_labels
from pylium.core.identity.numeric import ReservedIdentity
from pylium.core.settings.checks import HostRouting, host_routing_constants
from pylium.model.resource import Resource
from pylium.runtime.nodekeys import RECORDS_PREFIX

log = logging.getLogger(__name__)

PROGRAM = "cil_from_container"
TO_CONTAINER_PROGRAM = "cil_to_container"
OVERLAY_PROGRAM = "cil_from_overlay"
FROM_HOST_PROGRAM = "cil_from_host"
HOST_DEVICE = "cilium_host"
FROM_NETDEV_PROGRAM = "cil_from_netdev"
TO_NETDEV_PROGRAM = "cil_to_netdev"
HOST_ENDPOINT_ID = 0xFFFF
"""The host endpoint's ID: its policy map (pylium_policy_v2_65535) is the host firewall's.
Upstream allocates one from the endpoint IDs (its bpf_host template says 0xffff); pylium
reserves this one, and pods take 1..65534 (bpf/lib/policy.h HOST_ENDPOINT_ID)."""
TUNNEL_DEVICE = "cilium_vxlan"
VXLAN_OVERHEAD = 50
"""Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8."""


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    container_id: str
    endpoint_id: int
    namespace: str
    pod: str
    ifname: str
    host_ifname: str
    ipv4: str
    pod_mac: str
    identity: int
    labels: tuple[str, ...]
    port_mappings: tuple[dict[str, Any], ...] = ()
    """The CNI ADD's ``portMappings`` (wire shape): this pod's HostPorts, served by the
    services engine from the load-balancer maps."""


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


class EndpointManager:
    def __init__(
        self,
        *,
        store: Store,
        node: str,
        node_ip: ipaddress.IPv4Address,
        ipam: IPAM,
        identities: IdentityAllocator,
        bpf_root: Path,
        cluster: str,
        label_filter: LabelFilter,
        tunnel_port: int = 0,
        host_firewall: bool = False,
        nodeport: bool = False,
        mtu: int = 0,
        monitor_aggregation: int = 2,
        direct_routes: bool = False,
        skip_unreachable: bool = False,
        masquerade_keep: Sequence[ipaddress.IPv4Network] = (),
        masquerade_interfaces: Sequence[str] = (),
        eni_routing: ENIRouting | None = None,
        host_routing: HostRouting = HostRouting(False),
    ) -> None:
        self.store = store
        self.client = ResourceClient(store)
        self.node = node
        self.node_ip = node_ip
        self.ipam = ipam
        self.identities = identities
        self.bpf_root = bpf_root
        self.cluster = cluster
        self.label_filter = label_filter
        self.obj: BpfObject | None = None
        self.overlay: BpfObject | None = None
        self.host: BpfObject | None = None
        self.tunnel_port = tunnel_port
        self.host_firewall = host_firewall
        """``enable-host-firewall``: the host endpoint's policy on the underlay device."""
        self.nodeport = nodeport
        """kube-proxy replacement: NodePort, LoadBalancer and ExternalIPs for clients outside
        the node, in bpf_host on the underlay device (bpf/lib/nodeport.h)."""
        self.host_load_options: dict[str, dict[str, int]] = {}
        """BpfObject arguments sizing bpf_host's load-balancer maps as the services engine
        sizes them (they are the same pinned maps)."""
        self.mtu = mtu
        self.monitor_aggregation = monitor_aggregation
        """The datapath's ``monitor_aggregation`` (0 none ... 3 maximum)."""
        """Pods' MTU: the configured one, else the underlay's minus the tunnel's overhead."""
        self.direct_routes = direct_routes
        self.skip_unreachable = skip_unreachable
        self._installed_routes: set[ipaddress.IPv4Network] = set()
        self._routes_adopted = False
        self.masquerade_keep = tuple(masquerade_keep)
        """Destinations not masqueraded; empty: masquerading off."""
        self.masquerade_interfaces = tuple(masquerade_interfaces)
        """``egress-masquerade-interfaces``: masquerade only traffic leaving through these."""
        self._masqueraded: tuple[ipaddress.IPv4Network, ...] | None = None
        self.eni_routing = eni_routing
        """ENI IPAM: each pod's rules and its ENI's routing table."""
        self.cidr_identities: dict[ipaddress.IPv4Network, int] = {}
        """Prefixes named by policy -> their CIDR identity (set by the policy engine); the
        ipcache holds them so outside addresses resolve to the right CIDR identity."""
        self.host_routing = host_routing
        """BPF host routing (load-time constants of every object) or Legacy."""
        self._lock = threading.Lock()

    # -- node datapath ----------------------------------------------------------------------

    def start(self) -> None:
        router = self.ipam.router_ip
        if router is None:
            raise DatapathError("cilium_host", "set up", "no router IP (IPAM not ready)")
        if not self.mtu:
            underlay = podnet.underlay_mtu(self.node_ip)
            self.mtu = underlay - VXLAN_OVERHEAD if self.tunnel_port else underlay
        nl.add_veth(None, "cilium_host", None, "cilium_net", mtu=self.mtu)
        nl.add_address(None, "cilium_host", ipaddress.IPv4Interface(f"{router}/32"))
        for name, value in (
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ):
            podnet.write_sysctl(name, value)
        constants = {
            "monitor_aggregation": self.monitor_aggregation,
            **host_routing_constants(self.host_routing),
        }
        self.obj = BpfObject(build("bpf_lxc"), self.bpf_root, constants=constants).load()
        self.endpoints_map = epmap.EndpointsMap(self.obj.map_fd(epmap.NAME))
        self.ipcache_map = ipcache.IPCacheMap(self.obj.map_fd(ipcache.NAME))
        self.policy_maps = policy_maps.PolicyMaps(
            self.obj.map_fd(policy_maps.NAME), pin_dir=self.bpf_root
        )
        self.config_map = config.ConfigMap(self.obj.map_fd(config.NAME))
        self.ct_maps = [ct.CTMap(self.obj.map_fd(n), n) for n in (ct.TCP_NAME, ct.ANY_NAME)]
        if self.tunnel_port:
            # Same pinned maps: the overlay object reuses what bpf_lxc pinned.
            self.overlay = BpfObject(
                build("bpf_overlay"), self.bpf_root, constants=constants
            ).load()
            ifindex = podnet.ensure_vxlan(TUNNEL_DEVICE, self.tunnel_port, self.mtu)
            tc.attach(TUNNEL_DEVICE, self.overlay.prog_fd(OVERLAY_PROGRAM))
            config.ConfigMap(self.obj.map_fd(config.NAME)).set(tunnel_ifindex=ifindex)
            # The host reaches other nodes' pods through cilium_host (routes in sync_remote).
            self._load_host()
            assert self.host is not None
            tc.attach(HOST_DEVICE, self.host.prog_fd(FROM_HOST_PROGRAM), ingress=False)
        # BPF host routing in native routing: from-netdev delivers to local pods (through
        # the tunnel, from-overlay already does).
        if self.host_firewall or self.nodeport or (self.host_routing.bpf and not self.tunnel_port):
            self._attach_host_firewall()
        self._restore()
        log.info("datapath ready", extra={"bpf_root": str(self.bpf_root), "router": str(router)})

    def stop(self) -> None:
        for obj in (self.obj, self.overlay, self.host):
            if obj is not None:
                obj.close()  # programs stay attached; pinned maps stay
        self.obj = self.overlay = self.host = None

    def sync_remote(self) -> None:
        """The ipcache entries for other nodes' endpoints (with their node as tunnel endpoint)
        and for node addresses (host, remote-node), reconciled against the map. Each node's
        CiliumInternalIP (its router IP) is host here and remote-node elsewhere, with its node
        as tunnel endpoint in tunnel mode, where other nodes' pod CIDRs are routed through
        cilium_host (the host reaches remote pods through the tunnel, as upstream)."""
        if self.obj is None:
            return
        node_ips: dict[str, ipaddress.IPv4Address] = {}
        internal_ips: dict[str, ipaddress.IPv4Address] = {}
        cilium_nodes, _ = self.client.list("CiliumNode")
        for cn in cilium_nodes:
            for addr in cn.body.get("spec", {}).get("addresses") or []:
                if addr.get("type") == "InternalIP":
                    node_ips[cn.name] = ipaddress.IPv4Address(addr["ip"])
                elif addr.get("type") == "CiliumInternalIP":
                    internal_ips[cn.name] = ipaddress.IPv4Address(addr["ip"])
        router = self.ipam.router_ip
        if isinstance(router, ipaddress.IPv4Address):
            internal_ips[self.node] = router
        desired: dict[ipaddress.IPv4Network, ipcache.Entry] = {
            prefix: ipcache.Entry(identity=identity)
            for prefix, identity in self.cidr_identities.items()
        }
        for name, ip in node_ips.items():
            identity = ReservedIdentity.HOST if name == self.node else ReservedIdentity.REMOTE_NODE
            desired[ipaddress.IPv4Network(f"{ip}/32")] = ipcache.Entry(identity=int(identity))
        for name, ip in internal_ips.items():
            if name == self.node:
                desired[ipaddress.IPv4Network(f"{ip}/32")] = ipcache.Entry(
                    identity=int(ReservedIdentity.HOST)
                )
            elif name in node_ips:
                desired[ipaddress.IPv4Network(f"{ip}/32")] = ipcache.Entry(
                    identity=int(ReservedIdentity.REMOTE_NODE),
                    tunnel_endpoint=node_ips[name] if self.tunnel_port else None,
                )
        for cep in self.client.list("CiliumEndpoint")[0]:
            status = cep.body.get("status") or {}
            node = (status.get("networking") or {}).get("node")
            if node == self.node or node not in node_ips:
                continue
            for addressing in (status.get("networking") or {}).get("addressing") or []:
                if addressing.get("ipv4"):
                    desired[ipaddress.IPv4Network(f"{addressing['ipv4']}/32")] = ipcache.Entry(
                        identity=int((status.get("identity") or {}).get("id", 0)),
                        tunnel_endpoint=node_ips[node] if self.tunnel_port else None,
                    )
        if self.direct_routes:
            self._sync_node_routes(cilium_nodes, node_ips)
        elif self.tunnel_port and isinstance(router, ipaddress.IPv4Address):
            self._sync_tunnel_routes(cilium_nodes, node_ips, router)
        if self.masquerade_keep:
            pod_cidrs = tuple(
                c
                for pool in self.ipam.pool_names()
                for c in self.ipam.usage(pool).cidrs
                if c.version == 4
            )
            if pod_cidrs != self._masqueraded:
                masquerade.apply(pod_cidrs, self.masquerade_keep, self.masquerade_interfaces)
                self._masqueraded = pod_cidrs
        # Under the endpoints' lock: an endpoint being created has its ipcache entry written
        # before its record is stored, and must not be taken for a stale entry meanwhile
        # (that race deleted local pods' entries: they then resolved as world).
        with self._lock:
            local = {ipaddress.IPv4Network(f"{r.ipv4}/32") for r in self.records()}
            current = self.ipcache_map.dump()
            for prefix, entry in desired.items():
                if prefix not in local and current.get(prefix) != entry:
                    self.ipcache_map.upsert(prefix, entry)
            for prefix in current:
                if prefix not in desired and prefix not in local:
                    self.ipcache_map.delete(prefix)

    def _load_host(self) -> None:
        """bpf_host, once: its NodePort path on (kube-proxy replacement) with this node's
        addresses to SNAT to, its load-balancer maps sized as bpf_sock's."""
        if self.host is not None:
            return
        router = self.ipam.router_ip
        options = dict(self.host_load_options)
        # Aggregated like the other programs: traced per packet, the node's own traffic
        # (its Hubble and store streams included) would feed the flow pipeline with itself.
        constants = {
            **options.pop("constants", {}),
            "monitor_aggregation": self.monitor_aggregation,
            **host_routing_constants(self.host_routing),
            "enable_nodeport": int(self.nodeport),
            "ipv4_nodeport": int.from_bytes(self.node_ip.packed, sys.byteorder),
            "ipv4_gateway": int.from_bytes(router.packed, sys.byteorder)
            if isinstance(router, ipaddress.IPv4Address)
            else 0,
        }
        self.host = BpfObject(
            build("bpf_host"),
            self.bpf_root,
            constants=constants,
            inner_value_sizes=options.get("inner_value_sizes"),
            max_entries=options.get("max_entries"),
        ).load()

    def _attach_host_firewall(self) -> None:
        """cil_from_netdev / cil_to_netdev on the device holding the node's IP (upstream's
        native devices): the NodePort path (kube-proxy replacement), BPF host routing's
        delivery to local pods, and the host firewall, which judges nothing until the host
        endpoint's policy map exists. cil_to_netdev only serves the last two."""
        device = podnet.device_of(self.node_ip)
        if device is None:
            raise DatapathError(str(self.node_ip), "host firewall", "no device holds the node IP")
        self._load_host()
        assert self.host is not None
        tc.attach(device, self.host.prog_fd(FROM_NETDEV_PROGRAM))
        if self.host_firewall or self.nodeport:
            tc.attach(device, self.host.prog_fd(TO_NETDEV_PROGRAM), ingress=False)
        log.info(
            "bpf_host attached to the native device",
            extra={
                "device": device,
                "nodeport": self.nodeport,
                "host_firewall": self.host_firewall,
                "host_routing": self.host_routing.mode,
            },
        )

    def host_labels(self) -> frozenset[str]:
        """The host endpoint's labels: ``reserved:host`` and the Node's labels (filtered)."""
        node = self.client.get("Node", self.node)
        return host_labels(dict(node.labels) if node else {}, self.label_filter)

    def local_endpoints(self) -> list[LocalEndpoint]:
        """The endpoints as the policy engine needs them (the host's too, with the host
        firewall on)."""
        host = (
            [
                LocalEndpoint(
                    HOST_ENDPOINT_ID, int(ReservedIdentity.HOST), self.host_labels(), "", ""
                )
            ]
            if self.host_firewall
            else []
        )
        return host + [
            LocalEndpoint(
                endpoint_id=r.endpoint_id,
                identity=r.identity,
                labels=frozenset(r.labels),
                namespace=r.namespace,
                pod=r.pod,
            )
            for r in self.records()
        ]

    @property
    def records_prefix(self) -> str:
        """Where this node's endpoint records live in the store (watched for changes)."""
        return self._key("")

    def _key(self, container_id: str) -> str:
        return f"{RECORDS_PREFIX}{self.node}/{container_id}"

    def records(self) -> list[EndpointRecord]:
        items = self.store.list(f"{RECORDS_PREFIX}{self.node}/").items
        out = []
        for kv in items:
            data = json.loads(kv.value)
            data["labels"] = tuple(data["labels"])
            data["port_mappings"] = tuple(data.get("port_mappings") or ())
            out.append(EndpointRecord(**data))
        return out

    def _restore(self) -> None:
        for record in self.records():
            if podnet.link_info(record.host_ifname) is None:
                log.info(
                    "endpoint's veth is gone; removing it", extra={"container": record.container_id}
                )
                self._teardown(record)
                continue
            self._program(record)
        if self.eni_routing is not None:
            self.eni_routing.prune()
        log.info("endpoints restored", extra={"count": len(self.records())})

    def _program(self, record: EndpointRecord) -> None:
        assert self.obj is not None
        info = podnet.link_info(record.host_ifname)
        if info is None:
            raise DatapathError(record.host_ifname, "program endpoint", "host veth not found")
        ifindex, host_mac = info
        ip = ipaddress.IPv4Address(record.ipv4)
        self.endpoints_map.upsert(
            ip,
            epmap.EndpointInfo(
                ifindex=ifindex,
                endpoint_id=record.endpoint_id,
                identity=record.identity,
                mac=_mac(record.pod_mac),
                node_mac=_mac(host_mac),
            ),
        )
        self.ipcache_map.upsert(
            ipaddress.IPv4Network(f"{ip}/32"), ipcache.Entry(identity=record.identity)
        )
        tc.attach(record.host_ifname, self.obj.prog_fd(PROGRAM))
        # What the kernel routes to the pod (from the host; from other nodes when routing
        # natively) meets the pod's ingress policy on the veth's egress.
        tc.attach(record.host_ifname, self.obj.prog_fd(TO_CONTAINER_PROGRAM), ingress=False)
        podnet.endpoint_route(record.host_ifname, ip, record.pod_mac)
        if self.eni_routing is not None:
            self.eni_routing.install(ip)

    def _sync_node_routes(
        self, cilium_nodes: list[Resource], node_ips: dict[str, ipaddress.IPv4Address]
    ) -> None:
        """auto-direct-node-routes: every other node's pod CIDRs via that node's IP (nodes on a
        shared L2); with direct-routing-skip-unreachable, nodes not on a connected subnet are
        skipped instead of routed through the default gateway."""
        desired: dict[ipaddress.IPv4Network, ipaddress.IPv4Address] = {}
        for cn in cilium_nodes:
            if cn.name == self.node or cn.name not in node_ips:
                continue
            gateway = node_ips[cn.name]
            if self.skip_unreachable and not podnet.on_link(gateway):
                continue
            for cidr in (cn.body.get("spec", {}).get("ipam") or {}).get("podCIDRs") or []:
                desired[ipaddress.IPv4Network(cidr)] = gateway
        for cidr, gateway in desired.items():
            podnet.replace_route(cidr, gateway)
        for cidr in self._installed_routes - set(desired):
            podnet.delete_route(cidr)
        self._installed_routes = set(desired)

    def _sync_tunnel_routes(
        self,
        cilium_nodes: list[Resource],
        node_ips: dict[str, ipaddress.IPv4Address],
        router: ipaddress.IPv4Address,
    ) -> None:
        """Tunnel mode: every other node's pod CIDRs ``via <router IP> dev cilium_host src
        <router IP>`` with the pods' MTU; cil_from_host takes them into the tunnel."""
        desired = {
            ipaddress.IPv4Network(cidr)
            for cn in cilium_nodes
            if cn.name != self.node and cn.name in node_ips
            for cidr in (cn.body.get("spec", {}).get("ipam") or {}).get("podCIDRs") or []
            if ipaddress.ip_network(cidr).version == 4
        }
        if not self._routes_adopted:  # after a restart: ours, including removed nodes' ones
            self._installed_routes |= podnet.host_routes(router, HOST_DEVICE)
            self._routes_adopted = True
        for cidr in desired - self._installed_routes:
            podnet.host_route(cidr, router, HOST_DEVICE, self.mtu)
        for cidr in self._installed_routes - desired:
            podnet.delete_route(cidr)
        self._installed_routes = desired

    # -- the API's operations ---------------------------------------------------------------

    def _labels(self, namespace: str, pod: str, given: dict[str, str]) -> list[Label]:
        resource = self.client.get("Pod", pod, namespace)
        pod_labels = dict(resource.labels) if resource else dict(given)
        ns = self.client.get("Namespace", namespace)
        return list(
            identity_labels(
                pod_labels=pod_labels,
                namespace=namespace,
                namespace_labels=dict(ns.labels) if ns else {},
                service_account=str(
                    (resource.body.get("spec") or {}).get("serviceAccountName", "default")
                )
                if resource
                else "default",
                cluster=self.cluster,
                label_filter=self.label_filter,
            )
        )

    def create(self, container_id: str, request: dict[str, Any]) -> EndpointRecord:
        if self.obj is None:
            raise DatapathError("endpoint", "create", "datapath not ready")
        with self._lock:
            existing = {r.container_id: r for r in self.records()}
            if container_id in existing:
                return existing[container_id]
            used = {r.endpoint_id for r in existing.values()}
            endpoint_id = next(i for i in range(1, HOST_ENDPOINT_ID) if i not in used)
            namespace = str(request.get("k8s-namespace", "default"))
            pod = str(request.get("k8s-pod-name", container_id[:12]))
            try:
                mappings = parse_port_mappings(request.get("port-mappings") or [])
            except CniError as err:
                where = Location(source="EndpointChangeRequest", path=("port-mappings",))
                raise ValidationError([(where, f"{err.msg}: {err.details}")]) from err
            labels = self._labels(namespace, pod, dict(request.get("labels") or {}))
            identity = self.identities.allocate(labels)
            record = EndpointRecord(
                container_id=container_id,
                endpoint_id=endpoint_id,
                namespace=namespace,
                pod=pod,
                ifname=str(request.get("container-interface-name", "eth0")),
                host_ifname=str(request["interface-name"]),
                ipv4=str(request["addressing"]["ipv4"]),
                pod_mac=str(request["mac"]),
                identity=identity,
                labels=tuple(str(lb) for lb in labels),
                port_mappings=tuple(m.to_wire() for m in mappings),
            )
            try:
                self.policy_maps.delete(endpoint_id)  # a stale map of an earlier holder of the ID
                self._program(record)
            except PyliumError:
                # _program may have written the maps before failing: a refused endpoint
                # leaves nothing behind.
                self.endpoints_map.delete(ipaddress.IPv4Address(record.ipv4))
                self.ipcache_map.delete(ipaddress.IPv4Network(f"{record.ipv4}/32"))
                self.identities.release(identity)
                raise
            self.store.put(self._key(container_id), json.dumps(asdict(record)).encode())
        self._publish(record)
        log.info(
            "endpoint created",
            extra={"container": container_id, "ip": record.ipv4, "identity": identity},
        )
        return record

    def _publish(self, record: EndpointRecord) -> None:
        self.client.put(
            Resource(
                {
                    "apiVersion": "cilium.io/v2",
                    "kind": "CiliumEndpoint",
                    "metadata": {"name": record.pod, "namespace": record.namespace},
                    "status": {
                        "id": record.endpoint_id,
                        "identity": {"id": record.identity, "labels": list(record.labels)},
                        "networking": {"addressing": [{"ipv4": record.ipv4}], "node": self.node},
                        "state": "ready",
                    },
                }
            )
        )

    def delete(self, container_id: str) -> bool:
        with self._lock:
            record = next((r for r in self.records() if r.container_id == container_id), None)
            if record is None:
                return False
            self._teardown(record)
        return True

    def _teardown(self, record: EndpointRecord) -> None:
        ip = ipaddress.IPv4Address(record.ipv4)
        if self.obj is not None:
            self.endpoints_map.delete(ip)
            self.ipcache_map.delete(ipaddress.IPv4Network(f"{ip}/32"))
            # IDs are reused: the next endpoint with this ID must not inherit this policy.
            self.policy_maps.delete(record.endpoint_id)
            for ct_map in self.ct_maps:
                ct_map.flush_address(ip)
        if self.eni_routing is not None:
            self.eni_routing.remove(ip)
        self.identities.release(record.identity)
        self.ipam.release(ip)
        self.store.delete(self._key(record.container_id))
        self.client.delete("CiliumEndpoint", record.pod, record.namespace)
        log.info("endpoint deleted", extra={"container": record.container_id, "ip": record.ipv4})
