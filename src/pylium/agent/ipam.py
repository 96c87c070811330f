"""L5: the agent's IPAM: pod IPs from this node's CIDRs, persisted in the store.

Where the node's CIDRs come from depends on the mode: ``cluster-pool`` waits for the operator
to write ``CiliumNode.spec.ipam.podCIDRs``; ``kubernetes`` reads ``Node.spec.podCIDRs`` (or the
``network.cilium.io/ipv4-pod-cidr`` annotation). Every allocation is a store key
``ipam/<node>/<ip>`` created with compare-and-swap, so that a restart (even kill -9) restores
exactly the allocations in use, and two allocators can never hold one address. When every
CIDR is full the agent marks them ``depleted`` in the CiliumNode status, which asks the
operator for another block.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from typing import Any

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Compare, Put, Store
from pylium.base.errors import AllocationError
from pylium.core.ipam.cidrset import Network
from pylium.core.ipam.clusterpool import CIDRStatus
from pylium.core.ipam.hostscope import ROUTER_OWNER, Address, HostScopeAllocator, Usage
from pylium.model.config import IPAMMode

log = logging.getLogger(__name__)

ALLOCATIONS_PREFIX = "ipam/"
POD_CIDR_ANNOTATION = "network.cilium.io/ipv4-pod-cidr"
MORE_CIDR_WAIT = 10.0
"""How long an allocation waits for the operator to add a CIDR to a full node."""


class IPAM:
    def __init__(self, store: Store, node: str, mode: IPAMMode) -> None:
        self.store = store
        self.client = ResourceClient(store)
        self.node = node
        self.mode = mode
        self.allocator = HostScopeAllocator()
        self._lock = threading.Lock()
        self.ready = threading.Event()

    # -- the node's CIDRs -------------------------------------------------------------------

    def _wanted_cidrs(self) -> list[Network]:
        if self.mode is IPAMMode.KUBERNETES:
            node = self.client.get("Node", self.node)
            if node is None:
                return []
            spec = node.body.get("spec", {})
            raw = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
            if not raw and POD_CIDR_ANNOTATION in (node.metadata.get("annotations") or {}):
                raw = [node.metadata["annotations"][POD_CIDR_ANNOTATION]]
        else:
            cn = self.client.get("CiliumNode", self.node)
            raw = (
                list((cn.body.get("spec", {}).get("ipam") or {}).get("podCIDRs") or [])
                if cn
                else []
            )
        return [ipaddress.ip_network(c) for c in raw if ipaddress.ip_network(c).version == 4]

    def sync_cidrs(self) -> bool:
        """Pick up CIDRs added to this node; True when the allocator has at least one."""
        wanted = self._wanted_cidrs()
        with self._lock:
            added = [c for c in wanted if c not in self.allocator.cidrs]
            for cidr in added:
                self.allocator.add_cidr(cidr)
                log.info("pod CIDR assigned", extra={"cidr": str(cidr)})
            return bool(self.allocator.cidrs)

    def wait_for_cidrs(self, stop: threading.Event, period: float = 0.2) -> bool:
        """Block until the node has a CIDR (or ``stop``); then restore allocations."""
        logged = False
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
        persisted = {
            ipaddress.ip_address(kv.key.rsplit("/", 1)[1]): json.loads(kv.value)["owner"]
            for kv in listing.items
        }
        with self._lock:
            for problem in self.allocator.restore(persisted):
                log.error("allocation not restored: %s", problem)
            router = self.allocator.ensure_router()
            if router not in persisted:
                self._persist_new(router, ROUTER_OWNER)
        log.info(
            "IPAM ready",
            extra={
                "restored": len(persisted),
                "router": str(router),
                "usage": self.usage().status_line(),
            },
        )
        self._publish()

    def _persist_new(self, ip: Address, owner: str) -> bool:
        value = json.dumps({"owner": owner}).encode()
        return self.store.commit([Compare(self._key(ip), 0)], [Put(self._key(ip), value)]).succeeded

    def _publish(self) -> None:
        """Mirror allocations into ``CiliumNode.status.ipam.used`` and mark full CIDRs."""
        with self._lock:
            used = {
                str(ip): {"owner": owner} for ip, owner in sorted(self.allocator.owners.items())
            }
            full = self.allocator.full()
            cidrs = [str(c) for c in self.allocator.cidrs]

        def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
            if body is None:
                return None
            ipam = body.setdefault("status", {}).setdefault("ipam", {})
            ipam["used"] = used
            pod_cidrs = ipam.setdefault("pod-cidrs", {})
            for cidr in cidrs:
                state = CIDRStatus.DEPLETED if full else CIDRStatus.IN_USE
                pod_cidrs[cidr] = {"status": state.value}
            return body

        self.client.mutate("CiliumNode", self.node, fn=update)

    # -- the API's operations ---------------------------------------------------------------

    def allocate(self, owner: str) -> Address:
        deadline = time.monotonic() + MORE_CIDR_WAIT
        while True:
            with self._lock:
                # Lazily: the first free candidate is taken almost always.
                for ip in self.allocator.candidates():
                    if self._persist_new(ip, owner):
                        self.allocator.owners[ip] = owner
                        break
                    log.warning("address taken in the store; skipping", extra={"ip": str(ip)})
                    self.allocator.owners[ip] = "<taken>"
                else:
                    ip = None
            if ip is not None:
                self._publish()
                return ip
            self._publish()  # marks the CIDRs depleted: the operator adds one
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.mode is IPAMMode.KUBERNETES:
                raise AllocationError(
                    f"node {self.node}",
                    "no free pod IP in "
                    + (", ".join(str(c) for c in self.allocator.cidrs) or "(no CIDR)")
                    + (
                        ""
                        if self.mode is IPAMMode.KUBERNETES
                        else "; the operator has not added a CIDR"
                    ),
                )
            time.sleep(min(0.2, remaining))
            self.sync_cidrs()

    def allocate_specific(self, ip: Address, owner: str) -> None:
        with self._lock:
            holder = self.allocator.owner_of(ip)
            self.allocator.allocate_specific(ip, owner)
            if holder is None and not self._persist_new(ip, owner):
                del self.allocator.owners[ip]
                raise AllocationError(str(ip), "already allocated")
        self._publish()

    def release(self, ip: Address) -> bool:
        with self._lock:
            if self.allocator.owner_of(ip) in (None, ROUTER_OWNER):
                return False
            self.allocator.release(ip)
            self.store.delete(self._key(ip))
        self._publish()
        return True

    def owner_of(self, ip: Address) -> str | None:
        with self._lock:
            return self.allocator.owner_of(ip)

    def usage(self) -> Usage:
        with self._lock:
            return self.allocator.usage()

    @property
    def router_ip(self) -> Address | None:
        with self._lock:
            return self.allocator.router_ip
