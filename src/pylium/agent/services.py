"""L5: the agent's services engine: from the store's Services and EndpointSlices to this node's
load-balancer maps, and socket-LB on the node's cgroup subtree.

On start the ``bpf_sock`` object is loaded with its maps pinned beside ``bpf_lxc``'s, and, when
socket-LB is on (``bpf-lb-sock``, implied by ``kube-proxy-replacement``), its four hooks are
attached to the node's cgroup: ``<cgroup-root>/<cgroup-subtree>`` (the lab gives each node
``pylium-lab-<lab>/<node>``, where its pods' cgroups live; on a real node the subtree is
empty: the cgroup root, as upstream). Attachments outlive the agent; a restart replaces them
(:mod:`pylium.adapters.bpf.cgroup`). With socket-LB off the hooks are detached.

Every sync (twice a second) that follows a change under the Service, EndpointSlice or this
node's Node keys (store watches), or a full resync every 10 s, reads Services, EndpointSlices
and this node's labels; when they changed, the pure core (:mod:`pylium.core.lb`) gives the frontends
this node exposes (``service.cilium.io/node``/``node-selector``), each one's backends (traffic
policies, states) and the rows of the maps; the plan between the previous rows and the new
ones is written in its safe order (backends before the slots naming them, masters last;
deletes the other way), so unchanged entries are never touched. IDs are kept stable: after a
restart they are read back from the maps. ClusterIPs, NodePorts and EndpointSlices themselves
come from the operator (:mod:`pylium.operator.services`); a Service with no ClusterIP yet is
skipped until it has one.

Backend selection follows ``bpf-lb-algorithm`` and, with ``bpf-lb-algorithm-annotation``,
``service.cilium.io/lb-algorithm``: frontends that use Maglev (upstream's rule: those
reachable from outside the node, or annotated) get a table of ``bpf-lb-maglev-table-size``
entries, identical on every node; the others select at random. A pinned Maglev map made for
another table size (or empty) is dropped at start and rebuilt.

Session affinity (``sessionAffinity: ClientIP``, its timeout): the agent keeps the affinity
match map (the active backends of such services); bpf_sock keeps each client namespace's
choice.

``service.cilium.io/node``: the node's labels are read on every sync that follows a change of
its Node (a store watch), so relabelling a node installs or removes such services at once,
without the restart upstream needs.

HostPort (kube-proxy replacement): each local endpoint's CNI ``portMappings`` become HostPort
frontends (the surrogate ``0.0.0.0:<hostPort>`` and one per node address, or the mapping's
``hostIP``) with the pod as the only backend; the endpoint records are watched too, so a pod's
hostPort is served once its CNI ADD is done and removed with its DEL. Two pods claiming the
same hostPort: the first (by container ID) keeps it, as the portmap plugin would fail the second.

Not yet: the per-packet (tc) translation for traffic socket-LB cannot see,
NodePort/LoadBalancer from outside the node, IPv6.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from pylium.adapters.bpf import cgroup
from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import lb as lbmaps
from pylium.adapters.maps.base import open_pinned
from pylium.adapters.resources import ResourceClient
from pylium.agent.endpoints import EndpointManager
from pylium.base.errors import PyliumError, ValidationError
from pylium.core.lb import ids
from pylium.core.lb.addr import IPAddress, L3n4Addr, ServiceName
from pylium.core.lb.k8s import EndpointSlice, Service, parse_endpoint_slice, parse_service
from pylium.core.lb.listing import format_service_list
from pylium.core.lb.maglev import DEFAULT_TABLE_SIZE, maglev_config
from pylium.core.lb.services import (
    Selection,
    backends,
    frontends,
    hostport_frontends,
    node_exposes,
    select,
)
from pylium.core.lb.translate import (
    LBAlgorithm,
    LBSettings,
    MaglevTables,
    Rows,
    plan,
    translate,
)
from pylium.model.config import AgentSettings
from pylium.model.config import LBAlgorithm as ConfigAlgorithm
from pylium.runtime.wakeup import Wakeup

log = logging.getLogger(__name__)

RESYNC_SECONDS = 10.0

HOOKS = {
    "cil_sock4_connect": cgroup.AttachType.CGROUP_INET4_CONNECT,
    "cil_sock4_sendmsg": cgroup.AttachType.CGROUP_UDP4_SENDMSG,
    "cil_sock4_recvmsg": cgroup.AttachType.CGROUP_UDP4_RECVMSG,
    "cil_sock4_getpeername": cgroup.AttachType.CGROUP_INET4_GETPEERNAME,
}


def lb_settings(settings: AgentSettings) -> LBSettings:
    """The translation settings from the agent's ``bpf-lb-*`` keys."""
    return LBSettings(
        algorithm=LBAlgorithm.MAGLEV
        if settings.bpf_lb_algorithm is ConfigAlgorithm.MAGLEV
        else LBAlgorithm.RANDOM,
        maglev=maglev_config(settings.bpf_lb_maglev_table_size, settings.bpf_lb_maglev_hash_seed),
        algorithm_annotation=settings.bpf_lb_algorithm_annotation,
        external_cluster_ip=settings.bpf_lb_external_clusterip,
    )


class ServiceManager:
    def __init__(
        self,
        client: ResourceClient,
        *,
        node: str,
        node_addresses: tuple[IPAddress, ...],
        bpf_root: Path,
        cgroup_path: Path,
        socket_lb: bool,
        kube_proxy_replacement: bool,
        settings: LBSettings | None = None,
        node_port_range: tuple[int, int] = (30000, 32767),
        map_max: int = 65536,
        endpoints: EndpointManager | None = None,
    ) -> None:
        """``settings.maglev`` gives the Maglev table size the object is loaded with,
        ``node_port_range`` the ports a connection to a node address may be a NodePort on,
        ``map_max`` the entries of the service, backend, reverse-NAT, Maglev and affinity
        maps (``bpf-lb-map-max``); ``endpoints`` the local pods whose CNI port mappings
        become HostPort frontends (with kube-proxy replacement)."""
        self.client = client
        self.node = node
        self.node_addresses = node_addresses
        self.bpf_root = bpf_root
        self.cgroup_path = cgroup_path
        self.socket_lb = socket_lb
        self.kube_proxy_replacement = kube_proxy_replacement
        self.settings = settings or LBSettings(maglev=maglev_config())
        self.node_port_range = node_port_range
        self.map_max = map_max
        self.endpoints = endpoints
        self.table_size = (
            self.settings.maglev.table_size if self.settings.maglev else DEFAULT_TABLE_SIZE
        )
        self.obj: BpfObject | None = None
        self.maps: lbmaps.LBMaps | None = None
        self.rows = Rows()
        self.service_ids = ids.service_ids()
        self.backend_ids = ids.backend_ids()
        self.revision = 0
        # Parsed documents by store key, reused while their resourceVersion stays: a change
        # to one Service parses one Service, not all of them.
        self._services_parsed: _ParseCache[Service] = _ParseCache(parse_service, "Service")
        self._slices_parsed: _ParseCache[EndpointSlice] = _ParseCache(
            parse_endpoint_slice, "EndpointSlice"
        )
        # Each Service's selections, kept while its parsed Service and slices are the same
        # objects (the node's addresses and settings do not change while the agent runs).
        self._maglev_tables: MaglevTables = {}
        self._selections: dict[
            ServiceName, tuple[tuple[Service, tuple[EndpointSlice, ...]], tuple[Selection, ...]]
        ] = {}
        """Every Service and EndpointSlice written up to this store revision is in the maps."""
        self._signature: object = None
        self._wakeups: list[Wakeup] = []
        self._changed = threading.Event()
        """Set by the store watches on Services, EndpointSlices, this Node, endpoint records."""
        self._last_full = 0.0
        self._lock = threading.Lock()
        self.problems: dict[str, str] = {}
        self._pins_prepared = False
        """Services skipped, with why (unparsable objects)."""

    # -- datapath ---------------------------------------------------------------------------

    def prepare_pins(self) -> None:
        """Drop pinned load-balancer maps of another shape, before anything loads them
        (bpf_host's NodePort path shares them; the agent calls this before the endpoints'
        datapath starts). Once."""
        if self._pins_prepared:
            return
        self._drop_stale_maglev()
        self._drop_resized({name: self.map_max for name in lbmaps.SIZED})
        self._pins_prepared = True

    def host_load_options(self) -> dict[str, dict[str, int]]:
        """BpfObject arguments for bpf_host: its load-balancer maps shaped as bpf_sock's."""
        return lbmaps.host_load_options(self.table_size, self.map_max)

    def start(self) -> None:
        """Load bpf_sock (pinned maps), take IDs back from what the maps hold, attach."""
        self.prepare_pins()
        sized = {name: self.map_max for name in lbmaps.SIZED}
        self.obj = BpfObject(
            build("bpf_sock"),
            self.bpf_root,
            max_entries=sized,
            **lbmaps.sock_load_options(self.table_size, self.node_port_range),
        ).load()
        self.maps = lbmaps.LBMaps({name: self.obj.map_fd(name) for name in lbmaps.NAMES})
        self._restore(self.maps.read())
        if self.socket_lb:
            self.cgroup_path.mkdir(parents=True, exist_ok=True)
            for prog, typ in HOOKS.items():
                cgroup.attach(self.obj.prog_fd(prog), self.cgroup_path, typ)
            log.info("socket-LB attached", extra={"cgroup": str(self.cgroup_path)})
        elif self.cgroup_path.is_dir():
            for prog, typ in HOOKS.items():
                cgroup.detach(self.cgroup_path, typ, prog[:15])
        self._signature = None
        prefixes = [
            self.client.prefix_of("Service"),
            self.client.prefix_of("EndpointSlice"),
            self.client.prefix_of("Node") + self.node,
        ]
        if self.endpoints is not None:
            prefixes.append(self.endpoints.records_prefix)
        self._changed.set()  # the first sync after a start is a full one anyway
        self._wakeups = [
            Wakeup(self.client.store, prefix, self._changed).start() for prefix in prefixes
        ]

    def _drop_stale_maglev(self) -> None:
        """A pinned Maglev map keeps the inner size it was made with: keep it only when it
        holds tables of this size (an empty one cannot tell, and costs nothing to rebuild)."""
        pin = self.bpf_root / lbmaps.MAGLEV
        if not pin.exists():
            return
        try:
            maps = lbmaps.LBMaps.from_pins(self.bpf_root)
            tables = maps.read_maglev()
        except PyliumError:
            tables = {}
        if not tables or any(len(t) != self.table_size for t in tables.values()):
            pin.unlink()
            log.info("Maglev map rebuilt", extra={"table_size": self.table_size})

    def _drop_resized(self, sizes: dict[str, int]) -> None:
        """Pins made with another ``bpf-lb-map-max`` cannot be reused (libbpf refuses the
        load): drop them all, the maps are rebuilt from the store (IDs start afresh)."""
        stale = []
        for name, size in sizes.items():
            pin = self.bpf_root / name
            if pin.exists():
                fd = open_pinned(str(pin))
                try:
                    if lbmaps.map_max_entries(fd) != size:
                        stale.append(name)
                finally:
                    os.close(fd)
        if stale:
            for name in sizes:
                (self.bpf_root / name).unlink(missing_ok=True)
            log.info("load-balancer maps resized", extra={"maps": stale, "entries": self.map_max})

    def _restore(self, rows: Rows) -> None:
        """IDs as the maps hold them, so conntrack and reverse entries keep their meaning."""
        for key, value in rows.services.items():
            if key.slot == 0:
                try:
                    self.service_ids.restore(str(key.frontend), value.rev_nat_index)
                except PyliumError as err:
                    log.warning("service ID not restored: %s", err)
        for bid, be in rows.backends.items():
            try:
                self.backend_ids.restore(str(be.address), bid)
            except PyliumError as err:
                log.warning("backend ID not restored: %s", err)
        self.rows = rows

    def stop(self) -> None:
        for wakeup in self._wakeups:
            wakeup.stop()
        self._wakeups = []
        if self.obj is not None:
            self.obj.close()  # hooks stay attached, maps stay pinned
        self.obj = None

    # -- sync -------------------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> None:
        """Until a watched document changes, or ``timeout`` (the periodic resync)."""
        self._changed.wait(timeout)

    def sync(self) -> bool:
        """Bring the maps to what the store says; returns whether anything was recomputed."""
        if self.maps is None:
            self._changed.clear()  # nothing to bring up to date; the first sync is a full one
            return False
        with self._lock:
            changed = self._changed.is_set()
            self._changed.clear()
            due = time.monotonic() - self._last_full >= RESYNC_SECONDS
            if self._signature is not None and not changed and not due:
                return False
            self._last_full = time.monotonic()
            services, rev1 = self.client.list("Service")
            slices, rev2 = self.client.list("EndpointSlice")
            node = self.client.get("Node", self.node)
            labels = dict(node.labels) if node is not None else {}
            host_ports, host_port_problems = self._host_ports()
            signature = (
                tuple((s.key, s.metadata.get("resourceVersion")) for s in services),
                tuple((s.key, s.metadata.get("resourceVersion")) for s in slices),
                tuple(sorted(labels.items())),
                tuple((str(s.frontend.address), str(s.slots[0].address)) for s in host_ports),
            )
            if signature == self._signature:
                self.revision = max(rev1, rev2)
                return False
            new = self._compute(services, slices, labels, host_ports)
            self.problems.update(host_port_problems)
            upserts, deletes = plan(self.rows, new)
            ops = [*upserts, *deletes]
            self.maps.apply(ops)
            if ops:
                log.info(
                    "service maps updated",
                    extra={
                        "upserts": sum(1 for op in ops if op.value is not None),
                        "deletes": sum(1 for op in ops if op.value is None),
                        "frontends": sum(1 for k in new.services if k.slot == 0),
                    },
                )
            self.rows = new
            self._signature = signature
            self.revision = max(rev1, rev2)
            return True

    def _host_ports(self) -> tuple[list[Selection], dict[str, str]]:
        """HostPort frontends of this node's endpoints (first claim of a frontend wins), and
        the pods whose claim lost."""
        out: dict[L3n4Addr, Selection] = {}
        problems: dict[str, str] = {}
        if self.endpoints is None or not self.kube_proxy_replacement:
            return [], problems
        for record in sorted(self.endpoints.records(), key=lambda r: r.container_id):
            if not record.port_mappings:
                continue
            for sel in hostport_frontends(
                ServiceName(record.namespace, record.pod),
                ipaddress.ip_address(record.ipv4),
                record.port_mappings,
                node_name=self.node,
                node_addresses=self.node_addresses,
            ):
                if sel.frontend.address in out:
                    problems[f"{record.namespace}/{record.pod}"] = (
                        f"hostPort {sel.frontend.address} is taken by "
                        f"{out[sel.frontend.address].frontend.service}"
                    )
                    continue
                out[sel.frontend.address] = sel
        return list(out.values()), problems

    def _compute(
        self,
        services: list[Any],
        slices: list[Any],
        labels: dict[str, str],
        host_ports: list[Selection],
    ) -> Rows:
        parsed: dict[ServiceName, Service] = {}
        problems: dict[str, str] = {}
        for r in services:
            svc = self._services_parsed.get(r)
            if isinstance(svc, ValidationError):
                problems[f"{r.namespace}/{r.name}"] = str(svc)
            elif node_exposes(svc.annotations, labels):
                parsed[svc.name] = svc
        eps: dict[ServiceName, list[EndpointSlice]] = {}
        for r in slices:
            es = self._slices_parsed.get(r)
            if isinstance(es, ValidationError):
                problems[f"EndpointSlice {r.namespace}/{r.name}"] = str(es)
            else:
                eps.setdefault(es.service, []).append(es)
        self._services_parsed.keep(services)
        self._slices_parsed.keep(slices)
        selections = list(host_ports)
        cached = self._selections
        self._selections = {}
        for name, svc in parsed.items():
            inputs = (svc, tuple(eps.get(name, ())))
            hit = cached.get(name)
            if hit is not None and _same_objects(hit[0], inputs):
                chosen = hit[1]
            else:
                candidates = backends(svc, inputs[1])
                chosen = tuple(
                    select(svc, fe, candidates, node_name=self.node)
                    for fe in frontends(
                        svc,
                        node_addresses=self.node_addresses,
                        kube_proxy_replacement=self.kube_proxy_replacement,
                    )
                )
            self._selections[name] = (inputs, chosen)
            selections.extend(chosen)
        self.problems = problems
        return translate(
            selections,
            parsed,
            self.settings,
            service_ids=self.service_ids,
            backend_ids=self.backend_ids,
            maglev_tables=self._maglev_tables,
        )

    # -- reads ------------------------------------------------------------------------------

    def service_list(self) -> str:
        """``cilium-dbg service list`` of the rows written."""
        return format_service_list(self.rows)

    def frontends(self) -> list[L3n4Addr]:
        return sorted(
            (k.frontend for k in self.rows.services if k.slot == 0), key=lambda a: a.sort_key()
        )


def _same_objects(
    old: tuple[Service, tuple[EndpointSlice, ...]], new: tuple[Service, tuple[EndpointSlice, ...]]
) -> bool:
    return (
        old[0] is new[0]
        and len(old[1]) == len(new[1])
        and all(a is b for a, b in zip(old[1], new[1], strict=True))
    )


_Parsed = TypeVar("_Parsed")


class _ParseCache(Generic[_Parsed]):
    """Documents of one kind parsed once per resourceVersion (errors included)."""

    def __init__(self, parse: Callable[..., _Parsed], kind: str) -> None:
        self._parse, self._kind = parse, kind
        self._cache: dict[str, tuple[Any, _Parsed | ValidationError]] = {}

    def get(self, r: Any) -> _Parsed | ValidationError:
        version = r.metadata.get("resourceVersion")
        hit = self._cache.get(r.key)
        if hit is not None and version is not None and hit[0] == version:
            return hit[1]
        result: _Parsed | ValidationError
        try:
            result = self._parse(r.body, source=f"{self._kind} {r.namespace}/{r.name}")
        except ValidationError as err:
            result = err
        self._cache[r.key] = (version, result)
        return result

    def keep(self, current: list[Any]) -> None:
        """Forget documents that are gone."""
        if len(self._cache) > len(current):
            alive = {r.key for r in current}
            for key in [k for k in self._cache if k not in alive]:
                del self._cache[key]
