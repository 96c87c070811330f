"""L5: the Azure allocator (``ipam: azure``): pod IPs for CiliumNodes as IP configurations
on their VMs' NICs.

:class:`AzureProvider` is Azure's side of the shared cloud IPAM controller
(:mod:`pylium.operator.cloud_ipam`): its cache holds the resource group's VMs (their sizes),
scale sets, NICs (standalone and scale set ones) and virtual networks, refreshed every minute
and after each allocation; a VM size's NIC limit comes from the Resource SKUs API of its
location (once per location), the per-NIC address limit is Azure's 256. Allocation adds
``Cilium-<hex>`` IP configurations to the node's NIC (upstream never creates NICs in Azure
IPAM, nor releases addresses: there is no ``release-excess-ips`` flag for Azure). The
controller writes ``spec.ipam.pool`` (IP -> NIC resource ID), ``status.azure.interfaces`` and
``status.ipam.operator-status.error``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from pylium.adapters.azure import ARMClient, AzureError
from pylium.adapters.cloudapi import Metrics
from pylium.adapters.store.api import Store
from pylium.core.ipam.cloud import azure
from pylium.core.ipam.cloud.plan import CreateInterface, Interface, Limits, NodeSpec, Subnet
from pylium.model.config import OperatorSettings
from pylium.operator.cloud_ipam import RESYNC_SECONDS, CloudIPAMController

log = logging.getLogger(__name__)


class AzureProvider:
    """Azure behind the cloud IPAM controller: the ARM cache and calls."""

    mode = "azure"
    spec_key = "azure"
    cloud = "Azure"
    create_interfaces = False
    release_excess_ips = False

    def __init__(self, api: ARMClient) -> None:
        self.api = api
        self.nics: list[azure.NIC] = []
        self._subnets: list[Subnet] = []
        self.vm_sizes: dict[str, str] = {}
        """VM resource ID (lower case) -> VM size."""
        self.vm_locations: dict[str, str] = {}
        self.scale_sets: list[str] = []
        self.limits: dict[str, Limits] = {}
        self._sku_locations: set[str] = set()

    @property
    def metrics(self) -> Metrics:
        return self.api.metrics

    def refresh(self) -> None:
        sizes: dict[str, str] = {}
        locations: dict[str, str] = {}
        for vm in self.api.virtual_machines():
            key = str(vm["id"]).lower()
            sizes[key] = str(
                ((vm.get("properties") or {}).get("hardwareProfile") or {}).get("vmSize") or ""
            )
            locations[key] = str(vm.get("location") or "")
        scale_sets = []
        for ss in self.api.scale_sets():
            scale_sets.append(str(ss["name"]))
            prefix = str(ss["id"]).lower() + "/virtualmachines/"
            sizes[prefix] = str((ss.get("sku") or {}).get("name") or "")
            locations[prefix] = str(ss.get("location") or "")
        self.vm_sizes, self.vm_locations, self.scale_sets = sizes, locations, scale_sets
        self._refresh_network()

    def _refresh_network(self) -> None:
        self.nics = self.api.interfaces(self.scale_sets)
        self._subnets = azure.parse_subnets(self.api.virtual_networks())

    def refresh_instance(self, instance_id: str) -> None:
        # ARM lists NICs per resource group or scale set, not per VM: re-list them.
        self._refresh_network()

    def _vm_key(self, instance_id: str) -> str:
        key = instance_id.lower()
        if key in self.vm_sizes:
            return key
        return next((p for p in self.vm_sizes if p.endswith("/") and key.startswith(p)), key)

    def node_spec(self, spec: Mapping[str, Any]) -> NodeSpec:
        instance = str(spec.get("instance-id") or "")
        return azure.AzureSpec.from_cilium_node(
            spec, vm_size=self.vm_sizes.get(self._vm_key(instance), "")
        )

    def interfaces_of(self, spec: NodeSpec) -> list[Interface]:
        name = spec.interface_name if isinstance(spec, azure.AzureSpec) else ""
        return azure.interfaces_of(self.nics, spec.instance_id, name)

    def subnets(self) -> list[Subnet]:
        return self._subnets

    def limits_of(self, spec: NodeSpec) -> Limits | None:
        """The VM size's NIC count from Resource SKUs (asked once per location); the NICs
        attached when the size is not listed. 256 addresses per NIC either way."""
        location = self.vm_locations.get(self._vm_key(spec.instance_id), "")
        if location and location not in self._sku_locations:
            self._sku_locations.add(location)
            try:
                self.limits.update(azure.limits_from_skus(self.api.vm_sizes(location)))
            except AzureError as err:
                log.warning("Resource SKUs failed: %s", err)
        found = self.limits.get(spec.instance_type)
        if found is not None:
            return found
        return Limits(
            adapters=max(len(self.interfaces_of(spec)), 1),
            ipv4=azure.INTERFACE_ADDRESS_LIMIT,
        )

    def security_groups_for(self, spec: NodeSpec, interfaces: list[Interface]) -> tuple[str, ...]:
        return ()

    def subnet_of(self, interface_id: str) -> str:
        return next((n.subnet_id for n in self.nics if azure.same_id(n.id, interface_id)), "")

    def assign(self, spec: NodeSpec, interface_id: str, count: int) -> None:
        nic = next((n for n in self.nics if azure.same_id(n.id, interface_id)), None)
        if nic is None:
            raise AzureError("Interfaces.Get", "NotFound", f"NIC {interface_id} not in the cache")
        names = [azure.IPCONFIG_PREFIX + secrets.token_hex(4) for _ in range(count)]
        self.api.add_ip_configurations(nic, names)

    def unassign(self, spec: NodeSpec, interface_id: str, ips: list[str]) -> None:
        raise AzureError("release", "NotSupported", "Azure IPAM does not release addresses")

    def create_interface(self, spec: NodeSpec, create: CreateInterface) -> None:
        raise AzureError("create", "NotSupported", "Azure IPAM does not create interfaces")

    def status_of(self, spec: NodeSpec, interfaces: list[Interface]) -> dict[str, Any]:
        ids = {i.id.lower() for i in interfaces}
        return {
            "interfaces": azure.status_interfaces(
                (n for n in self.nics if n.id.lower() in ids), {s.id: s for s in self._subnets}
            )
        }


class AzureIPAMController(CloudIPAMController):
    """The shared controller over :class:`AzureProvider`."""

    def __init__(
        self,
        store: Store,
        api: ARMClient,
        settings: OperatorSettings,
        *,
        resync: float = RESYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.azure = AzureProvider(api)
        super().__init__(store, self.azure, settings, resync=resync, clock=clock)
        self.api = api
