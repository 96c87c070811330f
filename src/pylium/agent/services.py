"""L5: the agent's services engine: from the store's Services and EndpointSlices to this node's
load-balancer maps, and socket-LB on the node's cgroup subtree.

On start the ``bpf_sock`` object is loaded with its maps pinned beside ``bpf_lxc``'s, and, when
socket-LB is on (``bpf-lb-sock``, implied by ``kube-proxy-replacement``), its four hooks are
attached to the node's cgroup: ``<cgroup-root>/<cgroup-subtree>`` (the lab gives each node
``pylium-lab-<lab>/<node>``, where its pods' cgroups live; on a real node the subtree is
empty: the cgroup root, as upstream). Attachments outlive the agent; a restart replaces them
(:mod:`pylium.adapters.bpf.cgroup`). With socket-LB off the hooks are detached.

Services, EndpointSlices and this node's Node are followed by store watches
(:mod:`pylium.runtime.mirror`: listed at the first sync and after a watch gap, then only what
changed); a sync re-selects only the Services a change touched (a slice marks its Service, the
node's labels mark the Services that follow them), and the pure core's
:class:`~pylium.core.lb.translate.RowBuilder` re-translates only their frontends and plans
just the entries they touch, written in the plan's safe order (backends before the slots
naming them, masters last; deletes the other way). The cost of a change does not grow with
the number of services. IDs are kept stable: after a restart they are read back from the
maps, and the first sync plans from what the maps hold. ClusterIPs, NodePorts and
EndpointSlices themselves come from the operator (:mod:`pylium.operator.services`); a Service
with no ClusterIP yet is skipped until it has one.

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

import contextlib
import gc
import ipaddress
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

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
    NODE_ANNOTATION,
    NODE_SELECTOR_ANNOTATION,
    Selection,
    backends,
    frontends,
    hostport_frontends,
    node_exposes,
    select,
)
from pylium.core.lb.translate import LBAlgorithm, LBSettings, RowBuilder, Rows
from pylium.model.config import AgentSettings
from pylium.model.config import LBAlgorithm as ConfigAlgorithm
from pylium.model.resource import Resource
from pylium.runtime.mirror import Changes, Mirror
from pylium.runtime.wakeup import Wakeup

log = logging.getLogger(__name__)

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
        self.service_ids = ids.service_ids()
        self.backend_ids = ids.backend_ids()
        self.revision = 0
        """The store revision of the latest listing or watched change written to the maps."""
        self._wakeups: list[Wakeup] = []
        self._changed = threading.Event()
        """Set by the store watches on Services, EndpointSlices, this Node, endpoint records."""
        self._lock = threading.Lock()
        self._pins_prepared = False
        self._mirrors: dict[str, Mirror] = {}
        self._reset(Rows())

    def _reset(self, baseline: Rows) -> None:
        """Forget every document: the next sync lists them again and plans from
        ``baseline`` (what the maps hold)."""
        for mirror in self._mirrors.values():
            mirror.stop()
        self._builder = RowBuilder(
            self.settings,
            service_ids=self.service_ids,
            backend_ids=self.backend_ids,
            baseline=baseline,
        )
        self._synced = False
        self._mirrors = {
            kind: Mirror(self.client, kind, self._changed) for kind in ("Service", "EndpointSlice")
        }
        self._mirrors["Node"] = Mirror(self.client, "Node", self._changed, name=self.node)
        self._versions: dict[str, dict[str, str | None]] = {kind: {} for kind in self._mirrors}
        """Store key -> resourceVersion of every document held, per kind."""
        self._service_names: dict[str, ServiceName] = {}
        self._services: dict[ServiceName, Service] = {}
        """Parsed Services (exposed on this node or not) by name."""
        self._slice_owner: dict[str, tuple[ServiceName, tuple[str, str]]] = {}
        self._slices: dict[ServiceName, dict[tuple[str, str], EndpointSlice]] = {}
        """Each Service's EndpointSlices by (namespace, name)."""
        self._labels: dict[str, str] = {}
        self._host_port_owners: dict[ServiceName, tuple[Selection, ...]] = {}
        self._doc_problems: dict[str, str] = {}
        self._host_port_problems: dict[str, str] = {}

    @property
    def problems(self) -> dict[str, str]:
        """Services skipped, with why (unparsable objects, HostPort claims that lost)."""
        return {**self._doc_problems, **self._host_port_problems}

    @property
    def rows(self) -> Rows:
        """Every row written (a copy)."""
        with self._lock:
            return self._builder.rows()

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
        self._changed.set()  # the first sync lists everything
        if self.endpoints is not None:
            self._wakeups = [
                Wakeup(self.client.store, self.endpoints.records_prefix, self._changed).start()
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
        self._reset(rows)

    def stop(self) -> None:
        for wakeup in self._wakeups:
            wakeup.stop()
        self._wakeups = []
        for mirror in self._mirrors.values():
            mirror.stop()
        if self.obj is not None:
            self.obj.close()  # hooks stay attached, maps stay pinned
        self.obj = None

    # -- sync -------------------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> None:
        """Until a watched document changes, or ``timeout`` (the periodic resync)."""
        self._changed.wait(timeout)

    def relist(self) -> None:
        """List every document again at the next sync (as after a watch gap); only what
        differs from what is held is translated again."""
        for mirror in self._mirrors.values():
            mirror.relist()

    def sync(self) -> bool:
        """Bring the maps up to date with what the watches delivered since the last sync
        (everything, listed, at the first one); returns whether anything was recomputed."""
        if self.maps is None:
            self._changed.clear()  # nothing to bring up to date; the first sync is a full one
            return False
        with self._lock, _no_cycle_collection():
            self._changed.clear()
            taken = {kind: mirror.take() for kind, mirror in self._mirrors.items()}
            dirty = self._apply_services(self._merge("Service", taken["Service"]))
            dirty |= self._apply_slices(self._merge("EndpointSlice", taken["EndpointSlice"]))
            for node in self._merge("Node", taken["Node"]).values():
                labels = dict(node.labels) if node is not None else {}
                if labels != self._labels:
                    self._labels = labels
                    dirty |= {n for n, svc in self._services.items() if _follows_node(svc)}
            hosts = self._update_host_ports()
            self.revision = max(self.revision, *(t.revision for t in taken.values()))
            if not dirty and not hosts and self._synced:
                return False
            try:
                for name in dirty:  # any order: the builder orders frontends itself
                    self._select(name)
                upserts, deletes = self._builder.commit()
                ops = [*upserts, *deletes]
                self.maps.apply(ops)
            except Exception:
                self._recover()
                raise
            self._synced = True
            if ops:
                log.info(
                    "service maps updated",
                    extra={
                        "upserts": len(upserts),
                        "deletes": len(deletes),
                        "frontends": len(self._builder),
                    },
                )
            return True

    def _recover(self) -> None:
        """After a sync that failed half-way (a map write refused, IDs exhausted): start
        again from what the maps hold, as after a restart; the next sync lists everything."""
        assert self.maps is not None
        self.service_ids, self.backend_ids = ids.service_ids(), ids.backend_ids()
        try:
            rows = self.maps.read()
        except PyliumError as err:
            log.warning("service maps not readable (%s); rewriting them", err)
            rows = Rows()
        self._restore(rows)
        self._changed.set()

    def _merge(self, kind: str, taken: Changes) -> dict[str, Resource | None]:
        """The documents of ``kind`` that differ from those held (None: deleted); the held
        versions are brought up to date."""
        held = self._versions[kind]
        delta: dict[str, Resource | None] = {}
        if taken.full is not None:
            delta.update(dict.fromkeys(held.keys() - taken.full.keys()))
            delta.update(taken.full)
        delta.update(taken.changed)
        out: dict[str, Resource | None] = {}
        for key, r in delta.items():
            if r is None:
                if held.pop(key, _GONE) is not _GONE:
                    out[key] = None
                continue
            version = r.metadata.get("resourceVersion")
            if key not in held or held[key] != version or version is None:
                held[key] = version
                out[key] = r
        return out

    def _apply_services(self, delta: dict[str, Resource | None]) -> set[ServiceName]:
        dirty: set[ServiceName] = set()
        for key, r in delta.items():
            old = self._service_names.pop(key, None)
            if old is not None:
                self._services.pop(old, None)
                self._doc_problems.pop(str(old), None)
                dirty.add(old)
            if r is None:
                continue
            name = ServiceName(r.namespace, r.name)
            self._service_names[key] = name
            dirty.add(name)
            try:
                self._services[name] = parse_service(r.body, source=f"Service {name}")
            except ValidationError as err:
                self._doc_problems[str(name)] = str(err)
        return dirty

    def _apply_slices(self, delta: dict[str, Resource | None]) -> set[ServiceName]:
        dirty: set[ServiceName] = set()
        for key, r in delta.items():
            old = self._slice_owner.pop(key, None)
            if old is not None:
                owned = self._slices.get(old[0], {})
                owned.pop(old[1], None)
                if not owned:
                    self._slices.pop(old[0], None)
                self._doc_problems.pop(f"EndpointSlice {old[1][0]}/{old[1][1]}", None)
                dirty.add(old[0])
            if r is None:
                continue
            where = f"{r.namespace}/{r.name}"
            try:
                es = parse_endpoint_slice(r.body, source=f"EndpointSlice {where}")
            except ValidationError as err:
                self._doc_problems[f"EndpointSlice {where}"] = str(err)
                continue
            self._slice_owner[key] = (es.service, (r.namespace, r.name))
            self._slices.setdefault(es.service, {})[(r.namespace, r.name)] = es
            dirty.add(es.service)
        return dirty

    def _select(self, name: ServiceName) -> None:
        """Hand ``name``'s frontends and their backends on this node to the row builder."""
        svc = self._services.get(name)
        if svc is None or not node_exposes(svc.annotations, self._labels):
            self._builder.remove_owner(name)
            return
        owned = self._slices.get(name, {})
        candidates = backends(svc, [owned[k] for k in sorted(owned)])
        self._builder.set_owner(
            name,
            [
                select(svc, fe, candidates, node_name=self.node)
                for fe in frontends(
                    svc,
                    node_addresses=self.node_addresses,
                    kube_proxy_replacement=self.kube_proxy_replacement,
                )
            ],
            svc,
        )

    def _update_host_ports(self) -> bool:
        """Hand the HostPort frontends that changed to the row builder; whether any did."""
        selections, self._host_port_problems = self._host_ports()
        owners: dict[ServiceName, tuple[Selection, ...]] = {}
        for sel in selections:
            owners[sel.frontend.service] = (*owners.get(sel.frontend.service, ()), sel)
        changed = False
        for owner in self._host_port_owners.keys() - owners.keys():
            self._builder.remove_owner(owner)
            changed = True
        for owner, sels in owners.items():
            if self._host_port_owners.get(owner) != sels:
                self._builder.set_owner(owner, sels, None)
                changed = True
        self._host_port_owners = owners
        return changed

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

    # -- reads ------------------------------------------------------------------------------

    def service_list(self) -> str:
        """``cilium-dbg service list`` of the rows written."""
        return format_service_list(self.rows)

    def frontends(self) -> list[L3n4Addr]:
        with self._lock:
            return sorted(self._builder.frontends(), key=lambda a: a.sort_key())


_GONE = object()


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: a full sync allocates millions of small objects,
    and collections triggered by their count alone (traversing everything held, again and
    again) took a third of its time. Nothing here creates cycles; reference counting frees
    the garbage meanwhile, and the collector resumes with the next allocations after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _follows_node(svc: Service) -> bool:
    """Does the Service's exposure depend on the node's labels?"""
    return NODE_ANNOTATION in svc.annotations or NODE_SELECTOR_ANNOTATION in svc.annotations
