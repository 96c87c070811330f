"""L5: ENI routing for the agent's pods (``ipam: eni``), as upstream's
``pkg/datapath/linux/routing``.

A pod's address belongs to one of the node's ENIs, and the VPC only accepts it from that
interface, so every pod gets (:func:`pylium.core.ipam.eni.routing.plan_pod`):
``to <pod IP> lookup main`` (priority 20, where the endpoint route ``<pod IP> dev lxc…``
delivers it), ``from <pod IP> [to <VPC CIDR>] lookup <10 + ENI index>`` (priority 110; per VPC
CIDR when ``enable-ipv4-masquerade`` is on, a catch-all otherwise) and, in the ENI's table, the
subnet router as a link route and the default route via it. The ENI's device is found by the
MAC address the operator published in ``status.eni.enis`` (as upstream); a just-attached ENI
may not have appeared yet, so the agent waits for it a while. Rules go when the pod goes; the
tables stay (other pods share them). After a restart the live endpoints' plans are applied
again (present rules are not added twice) and rules of pods that went meanwhile are removed.

Masquerading (``enable-ipv4-masquerade``): pod traffic to anything but the VPC's CIDRs (and
``ipv4-native-routing-cidr``) follows the main table and leaves with the node's address, only
through ``egress-masquerade-interfaces`` when that is set.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pylium.adapters.netlink import eniroutes, masquerade, podnet
from pylium.adapters.resources import ResourceClient
from pylium.base.errors import DatapathError
from pylium.core.ipam.eni import routing

log = logging.getLogger(__name__)

DEVICE_WAIT = 15.0
"""How long a pod's routing waits for its ENI's device to appear (attached just now)."""


class ENIRouting:
    def __init__(
        self,
        client: ResourceClient,
        node: str,
        *,
        masquerade: bool,
        native_routing_cidr: str = "",
        masquerade_interfaces: Sequence[str] = (),
        device_wait: float = DEVICE_WAIT,
    ) -> None:
        self.client = client
        self.node = node
        self.masquerade = masquerade
        self.native_routing_cidr = native_routing_cidr
        self.masquerade_interfaces = tuple(masquerade_interfaces)
        self.device_wait = device_wait
        self._plans: dict[str, routing.PodRouting] = {}
        """Pod IP -> the routing installed for it by this process."""
        self._masqueraded: tuple[object, ...] | None = None
        self._lock = threading.Lock()

    def _cilium_node(self) -> dict[str, Any]:
        cn = self.client.get("CiliumNode", self.node)
        return dict(cn.body) if cn is not None else {}

    def _locate(self, ip: str) -> tuple[routing.PodENI, str]:
        """The pod IP's ENI and that ENI's device, waiting for either to show up."""
        deadline = time.monotonic() + self.device_wait
        while True:
            eni = routing.pod_eni(self._cilium_node(), ip)
            device = eniroutes.device_by_mac(None, eni.mac) if eni is not None else None
            if eni is not None and device is not None:
                return eni, device
            if time.monotonic() > deadline:
                what = (
                    "not in spec.ipam.pool with an ENI in status.eni.enis"
                    if eni is None
                    else f"ENI {eni.id} (device index {eni.number}, MAC {eni.mac}) has no "
                    "device on this node: is it attached?"
                )
                raise DatapathError(ip, "ENI routing", what)
            time.sleep(0.2)

    def install(self, ip: ipaddress.IPv4Address) -> routing.PodRouting:
        """Rules and the ENI table's routes for a pod (idempotent)."""
        eni, device = self._locate(str(ip))
        eniroutes.set_up(None, device)
        # The VPC's answers come back on the ENI, whatever the main table says about them.
        podnet.write_sysctl(f"net.ipv4.conf.{device}.rp_filter", "0")
        plan = routing.plan_pod(
            pod_ip=str(ip),
            eni_number=eni.number,
            device=device,
            subnet_cidr=eni.subnet_cidr,
            vpc_cidrs=routing.egress_cidrs(eni, self.native_routing_cidr),
            masquerade=self.masquerade,
        )
        with self._lock:
            eniroutes.apply(None, plan)
            self._plans[str(ip)] = plan
        log.info(
            "ENI routing installed",
            extra={"ip": str(ip), "eni": eni.id, "device": device, "table": plan.routes[0].table},
        )
        return plan

    def remove(self, ip: ipaddress.IPv4Address) -> None:
        """The pod's rules (its ENI's table stays)."""
        with self._lock:
            self._plans.pop(str(ip), None)
            stale = routing.stale(
                eniroutes.rules(None), list(self._plans.values()), pod_prefixes=[f"{ip}/32"]
            )
            eniroutes.remove(None, stale)

    def prune(self) -> list[routing.Rule]:
        """After a restart, once the live endpoints are installed again: remove every pod rule
        no live endpoint's plan holds (pods deleted while the agent was down, a changed
        masquerade setting)."""
        with self._lock:
            installed = eniroutes.rules(None)
            prefixes = sorted({r.src or r.dst for r in installed})
            stale = routing.stale(installed, list(self._plans.values()), pod_prefixes=prefixes)
            eniroutes.remove(None, stale)
        if stale:
            log.info("stale ENI rules removed", extra={"rules": [str(r) for r in stale]})
        return stale

    def sync_masquerade(self, pod_ips: Iterable[ipaddress.IPv4Network]) -> None:
        """nftables masquerading of the node's pod IPs to anything outside the VPC."""
        if not self.masquerade:
            return
        keep: list[str] = [self.native_routing_cidr] if self.native_routing_cidr else []
        if not keep:
            status = self._cilium_node().get("status") or {}
            enis = (status.get("eni") or {}).get("enis") or {}
            for eni in enis.values():
                vpc = eni.get("vpc") or {}
                for cidr in [vpc.get("primary-cidr"), *(vpc.get("cidrs") or [])]:
                    if cidr and cidr not in keep:
                        keep.append(str(cidr))
        sources = tuple(sorted(pod_ips))
        wanted = (sources, tuple(keep))
        if not keep or wanted == self._masqueraded:
            return
        masquerade.apply(
            sources,
            [ipaddress.IPv4Network(c) for c in keep],
            self.masquerade_interfaces,
        )
        self._masqueraded = wanted
