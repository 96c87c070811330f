"""L5: the agent's IPAM: pod IPs from this node's CIDRs, persisted in the store.

Where the node's CIDRs come from depends on the mode: ``cluster-pool`` waits for the operator
to write ``CiliumNode.spec.ipam.podCIDRs``; ``kubernetes`` reads ``Node.spec.podCIDRs`` (or the
``network.cilium.io/ipv4-pod-cidr`` annotation); ``multi-pool`` asks for addresses per
CiliumPodIPPool in ``spec.ipam.pools.requested`` and uses the chunks the operator lists in
``spec.ipam.pools.allocated``. Every allocation is a store key ``ipam/<node>/<ip>`` created
with compare-and-swap, so that a restart (even kill -9) restores exactly the allocations in
use, and two allocators can never hold one address. A full node asks for more: cluster-pool
marks its CIDRs ``depleted`` in the CiliumNode status; multi-pool raises its request.

``eni`` (AWS ENI IPAM): the agent creates its CiliumNode with its instance's metadata
(``spec.instance-id``, ``spec.eni``: instance type, VPC, availability zone, ...) and its
watermarks (``spec.ipam.pre-allocate``, ...); the operator fills ``spec.ipam.pool`` with ENI
addresses (each handed out as a /32) and keeps ``pre-allocate`` of them free as pods use them
(``status.ipam.used``, with the ENI as ``resource``). There is no instance metadata service
here: the metadata comes from the ``eni`` argument or ``$PYLIUM_ENI_METADATA`` (a JSON object
of CiliumNode ``spec.eni`` fields plus ``instance-id``, or ``@path`` to a file holding one).
The agent answers the operator's release handshake (``status.ipam.release-ips``): an IP
``marked-for-release`` that no pod holds becomes ``ready-for-release`` and is not handed out
any more; one in use becomes ``do-not-release``; ``released`` entries are dropped once the IP
left the pool.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Compare, Put, Store
from pylium.base.errors import AllocationError, ConfigError
from pylium.core.ipam.cidrset import Network
from pylium.core.ipam.clusterpool import CIDRStatus
from pylium.core.ipam.eni import netconf
from pylium.core.ipam.hostscope import (
    MULTI_POOL,
    ROUTER_OWNER,
    Address,
    HostScopeAllocator,
    Usage,
)
from pylium.core.ipam.multipool import DEFAULT_POOL
from pylium.model.config import IPAMMode
from pylium.runtime.nodekeys import ALLOCATIONS_PREFIX

log = logging.getLogger(__name__)

POD_CIDR_ANNOTATION = "network.cilium.io/ipv4-pod-cidr"
MORE_CIDR_WAIT = 10.0
"""How long an allocation waits for the operator to give a full node more addresses."""
ENI_METADATA_ENV = "PYLIUM_ENI_METADATA"
"""Stand-in for EC2's instance metadata service: JSON (or ``@file``) with ``instance-id`` and
``spec.eni`` fields (``instance-type``, ``vpc-id``, ``availability-zone``, ...)."""
MARKED, READY, DO_NOT_RELEASE, RELEASED = (
    "marked-for-release",
    "ready-for-release",
    "do-not-release",
    "released",
)


def eni_metadata_from_env() -> dict[str, Any]:
    raw = os.environ.get(ENI_METADATA_ENV, "")
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    if not raw:
        return {}
    loaded = json.loads(raw)
    if not isinstance(loaded, dict):
        raise AllocationError("eni", f"${ENI_METADATA_ENV} must hold a JSON object")
    return loaded


class IPAM:
    def __init__(
        self,
        store: Store,
        node: str,
        mode: IPAMMode,
        *,
        pre_allocate: int = 8,
        min_allocate: int = 0,
        max_allocate: int = 0,
        eni: Mapping[str, Any] | None = None,
        cni_conf: str = "",
    ) -> None:
        self.store = store
        self.client = ResourceClient(store)
        self.node = node
        self.mode = mode
        self.pre_allocate = pre_allocate
        self.min_allocate = min_allocate
        self.max_allocate = max_allocate
        self.eni = dict(eni) if eni is not None else None
        self.cni_conf = cni_conf
        """``read-cni-conf``: a custom CNI configuration whose ``eni``/``ipam`` sections go
        into the CiliumNode (over the instance metadata), as upstream."""
        # ENI: every pool address is a /32 of its own, all of it usable.
        self.pools: dict[str, HostScopeAllocator] = {
            DEFAULT_POOL: HostScopeAllocator(reservation=MULTI_POOL)
            if mode is IPAMMode.ENI
            else HostScopeAllocator()
        }
        self._eni_resources: dict[str, str] = {}
        """ENI mode: pool IP -> its ENI (``resource`` in status.ipam.used)."""
        self._lock = threading.Lock()
        self.ready = threading.Event()

    @property
    def allocator(self) -> HostScopeAllocator:
        """The default pool's allocator (the only one outside multi-pool)."""
        return self.pools[DEFAULT_POOL]

    # -- the node's CIDRs -------------------------------------------------------------------

    def _wanted_cidrs(self) -> dict[str, list[Network]]:
        raw: dict[str, list[str]] = {}
        if self.mode is IPAMMode.KUBERNETES:
            node = self.client.get("Node", self.node)
            if node is not None:
                spec = node.body.get("spec", {})
                found = list(
                    spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
                )
                annotations = node.metadata.get("annotations") or {}
                if not found and POD_CIDR_ANNOTATION in annotations:
                    found = [annotations[POD_CIDR_ANNOTATION]]
                raw[DEFAULT_POOL] = found
        else:
            cn = self.client.get("CiliumNode", self.node)
            ipam = ((cn.body.get("spec", {}) or {}).get("ipam") or {}) if cn else {}
            if self.mode is IPAMMode.MULTI_POOL:
                for entry in (ipam.get("pools") or {}).get("allocated") or []:
                    raw[entry["pool"]] = list(entry.get("cidrs") or [])
            elif self.mode is IPAMMode.ENI and cn is not None:
                pool = ipam.get("pool") or {}
                self._eni_resources = {
                    ip: str((v or {}).get("resource", "")) for ip, v in pool.items()
                }
                releasing = ((cn.body.get("status") or {}).get("ipam") or {}).get(
                    "release-ips"
                ) or {}
                raw[DEFAULT_POOL] = [
                    f"{ip}/32" for ip in pool if releasing.get(ip) not in (MARKED, READY)
                ]
            else:
                raw[DEFAULT_POOL] = list(ipam.get("podCIDRs") or [])
        return {
            pool: [ipaddress.ip_network(c) for c in cidrs if ipaddress.ip_network(c).version == 4]
            for pool, cidrs in raw.items()
        }

    def sync_cidrs(self) -> bool:
        """Pick up CIDRs given to this node; True when the default pool has at least one."""
        if self.mode is IPAMMode.ENI:
            return self._sync_eni()
        wanted = self._wanted_cidrs()
        with self._lock:
            for pool, cidrs in wanted.items():
                allocator = self.pools.setdefault(pool, HostScopeAllocator())
                for cidr in cidrs:
                    if cidr not in allocator.cidrs:
                        allocator.add_cidr(cidr)
                        log.info("pod CIDR assigned", extra={"cidr": str(cidr), "pool": pool})
            return bool(self.allocator.cidrs)

    # -- ENI ----------------------------------------------------------------------------------

    def ensure_cilium_node(self) -> None:
        """ENI mode (``auto-create-cilium-node-resource``): create or complete this node's
        CiliumNode with the instance metadata and the watermarks; fields already set (by the
        user) win over those, and the ``eni``/``ipam`` sections of the custom CNI
        configuration (``read-cni-conf``) over everything, as upstream."""
        metadata = self.eni if self.eni is not None else eni_metadata_from_env()
        if not metadata.get("instance-id") or not metadata.get("instance-type"):
            raise AllocationError(
                f"node {self.node}",
                "eni IPAM needs the instance's metadata (instance-id, instance-type, vpc-id, "
                f"availability-zone): no metadata service here, set ${ENI_METADATA_ENV}",
            )
        eni_fields = {k: v for k, v in metadata.items() if k != "instance-id"}
        watermarks = {
            "pre-allocate": self.pre_allocate,
            "min-allocate": self.min_allocate,
            "max-allocate": self.max_allocate,
        }
        conf = netconf.ENINetConf()
        if self.cni_conf:
            try:
                text = Path(self.cni_conf).read_text()
            except OSError as err:
                raise ConfigError("read-cni-conf", f"{self.cni_conf}: {err}") from err
            conf = netconf.parse(text)

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            body = body or {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNode",
                "metadata": {"name": self.node},
                "spec": {},
            }
            spec = body.setdefault("spec", {})
            spec.setdefault("instance-id", metadata["instance-id"])
            eni = spec.setdefault("eni", {})
            for key, value in eni_fields.items():
                eni.setdefault(key, value)
            eni.update(conf.eni)
            ipam = spec.setdefault("ipam", {})
            for key, value in watermarks.items():
                if value:
                    ipam.setdefault(key, value)
            ipam.update(conf.ipam)
            return body

        self.client.mutate("CiliumNode", self.node, fn=update)

    def _sync_eni(self) -> bool:
        """Follow ``spec.ipam.pool`` (new /32s in, released ones out) and answer the release
        handshake; True when the pool has an address."""
        wanted = {c for c in self._wanted_cidrs().get(DEFAULT_POOL, [])}
        cn = self.client.get("CiliumNode", self.node)
        releasing = dict(
            (((cn.body.get("status") or {}).get("ipam") or {}).get("release-ips") or {})
            if cn
            else {}
        )
        answers: dict[str, str | None] = {}
        with self._lock:
            allocator = self.allocator
            for cidr in sorted(wanted - set(allocator.cidrs), key=lambda c: int(c[0])):
                allocator.add_cidr(cidr)
            for ip, state in releasing.items():
                addr = ipaddress.ip_address(ip)
                if state == MARKED:
                    held = allocator.owner_of(addr) is not None
                    answers[ip] = DO_NOT_RELEASE if held else READY
                elif state == RELEASED and ip not in self._eni_resources:
                    answers[ip] = None
            for cidr in list(allocator.cidrs):
                if cidr not in wanted and allocator.owner_of(cidr[0]) is None:
                    allocator.remove_cidr(cidr)
            has_any = bool(allocator.cidrs)
        if answers:
            self._answer_release(answers)
        return has_any

    def _answer_release(self, answers: Mapping[str, str | None]) -> None:
        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            ipam = body.setdefault("status", {}).setdefault("ipam", {})
            current = dict(ipam.get("release-ips") or {})
            for ip, answer in answers.items():
                if answer is None:
                    current.pop(ip, None)
                elif current.get(ip) == MARKED:
                    current[ip] = answer
            if current:
                ipam["release-ips"] = current
            else:
                ipam.pop("release-ips", None)
            return body

        self.client.mutate("CiliumNode", self.node, fn=update)
        log.info("answered IP release", extra={"answers": dict(answers)})

    def wait_for_cidrs(self, stop: threading.Event, period: float = 0.2) -> bool:
        """Block until the node has a CIDR (or ``stop``); then restore allocations."""
        logged = False
        if self.mode is IPAMMode.ENI:
            self.ensure_cilium_node()
        if self.mode is IPAMMode.MULTI_POOL:
            self._publish()  # the default pool's request: the operator answers it
        while not stop.is_set():
            if self.sync_cidrs():
                self.restore()
                self.ready.set()
                return True
            if not logged:
                log.info("waiting for this node's pod CIDR", extra={"mode": self.mode.value})
                logged = True
            stop.wait(period)
        return False

    # -- persistence ------------------------------------------------------------------------

    def _key(self, ip: Address) -> str:
        return f"{ALLOCATIONS_PREFIX}{self.node}/{ip}"

    def restore(self) -> None:
        """Take back every persisted allocation of this node; the router IP first."""
        listing = self.store.list(f"{ALLOCATIONS_PREFIX}{self.node}/")
        persisted: dict[str, dict[Address, str]] = {}
        for kv in listing.items:
            entry = json.loads(kv.value)
            ip = ipaddress.ip_address(kv.key.rsplit("/", 1)[1])
            persisted.setdefault(entry.get("pool", DEFAULT_POOL), {})[ip] = entry["owner"]
        with self._lock:
            for pool, allocations in persisted.items():
                allocator = self.pools.setdefault(pool, HostScopeAllocator())
                for problem in allocator.restore(allocations):
                    log.error("allocation not restored: %s", problem, extra={"pool": pool})
            router = self.allocator.ensure_router()
            if router not in persisted.get(DEFAULT_POOL, {}):
                self._persist_new(router, ROUTER_OWNER, DEFAULT_POOL)
        restored = sum(len(a) for a in persisted.values())
        log.info("IPAM ready", extra={"restored": restored, "router": str(router)})
        self._publish()

    def _persist_new(self, ip: Address, owner: str, pool: str) -> bool:
        value = json.dumps({"owner": owner, "pool": pool}).encode()
        return self.store.commit([Compare(self._key(ip), 0)], [Put(self._key(ip), value)]).succeeded

    def _publish(self, wanted_pool: str | None = None) -> None:
        """Mirror allocations into the CiliumNode and ask for more where a pool is full:
        ``status.ipam.used``; cluster-pool: ``status.ipam.pod-cidrs`` (depleted when full);
        multi-pool: ``spec.ipam.pools.requested`` (used + pre-allocation per pool)."""
        with self._lock:
            used = {
                str(ip): {
                    "owner": owner,
                    **({"pool": pool} if pool != DEFAULT_POOL else {}),
                    **(
                        {"resource": self._eni_resources[str(ip)]}
                        if str(ip) in self._eni_resources
                        else {}
                    ),
                }
                for pool, allocator in self.pools.items()
                for ip, owner in sorted(allocator.owners.items())
            }
            full = self.allocator.full()
            cidrs = [str(c) for c in self.allocator.cidrs]
            requested = [
                {"pool": pool, "needed": {"ipv4-addrs": len(a.owners) + self.pre_allocate}}
                for pool, a in sorted(self.pools.items())
                if a.cidrs or a.owners or pool in (DEFAULT_POOL, wanted_pool)
            ]

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            status = body.setdefault("status", {}).setdefault("ipam", {})
            status["used"] = used
            if self.mode is IPAMMode.MULTI_POOL:
                pools = body.setdefault("spec", {}).setdefault("ipam", {}).setdefault("pools", {})
                pools["requested"] = requested
            elif self.mode is IPAMMode.ENI:
                pass  # the operator watches status.ipam.used and tops the pool up
            else:
                pod_cidrs = status.setdefault("pod-cidrs", {})
                for cidr in cidrs:
                    state = CIDRStatus.DEPLETED if full else CIDRStatus.IN_USE
                    pod_cidrs[cidr] = {"status": state.value}
            return body

        self.client.mutate("CiliumNode", self.node, fn=update)

    # -- the API's operations ---------------------------------------------------------------

    def allocate(self, owner: str, pool: str = DEFAULT_POOL) -> Address:
        deadline = time.monotonic() + MORE_CIDR_WAIT
        if pool != DEFAULT_POOL and self.mode is not IPAMMode.MULTI_POOL:
            raise AllocationError(
                pool, f"pools other than default need multi-pool IPAM (mode is {self.mode.value})"
            )
        while True:
            ip: Address | None = None
            with self._lock:
                allocator = self.pools.setdefault(pool, HostScopeAllocator())
                # Lazily: the first free candidate is taken almost always.
                for candidate in allocator.candidates():
                    if self._persist_new(candidate, owner, pool):
                        allocator.owners[candidate] = owner
                        ip = candidate
                        break
                    log.warning(
                        "address taken in the store; skipping", extra={"ip": str(candidate)}
                    )
                    allocator.owners[candidate] = "<taken>"
            self._publish(wanted_pool=pool)  # records the use, or asks for more addresses
            if ip is not None:
                return ip
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.mode is IPAMMode.KUBERNETES:
                with self._lock:
                    where = ", ".join(str(c) for c in allocator.cidrs) or "(no CIDR)"
                raise AllocationError(
                    f"node {self.node} pool {pool}",
                    f"no free pod IP in {where}"
                    + (
                        ""
                        if self.mode is IPAMMode.KUBERNETES
                        else "; the operator has not added addresses"
                    ),
                )
            time.sleep(min(0.2, remaining))
            self.sync_cidrs()

    def _pool_of(self, ip: Address) -> tuple[str, HostScopeAllocator] | None:
        for pool, allocator in self.pools.items():
            if allocator.owner_of(ip) is not None or any(ip in c for c in allocator.cidrs):
                return pool, allocator
        return None

    def allocate_specific(self, ip: Address, owner: str) -> None:
        with self._lock:
            found = self._pool_of(ip)
            if found is None:
                raise AllocationError(str(ip), "not in any of this node's CIDRs")
            pool, allocator = found
            holder = allocator.owner_of(ip)
            allocator.allocate_specific(ip, owner)
            if holder is None and not self._persist_new(ip, owner, pool):
                del allocator.owners[ip]
                raise AllocationError(str(ip), "already allocated")
        self._publish()

    def release(self, ip: Address) -> bool:
        with self._lock:
            found = self._pool_of(ip)
            if found is None or found[1].owner_of(ip) in (None, ROUTER_OWNER):
                return False
            found[1].release(ip)
            self.store.delete(self._key(ip))
        self._publish()
        return True

    def owner_of(self, ip: Address) -> str | None:
        with self._lock:
            found = self._pool_of(ip)
            return found[1].owner_of(ip) if found else None

    def pool_names(self) -> list[str]:
        with self._lock:
            return sorted(self.pools)

    def usage(self, pool: str = DEFAULT_POOL) -> Usage:
        with self._lock:
            return self.pools.get(pool, HostScopeAllocator()).usage()

    @property
    def router_ip(self) -> Address | None:
        with self._lock:
            return self.allocator.router_ip
