"""L5: the AlibabaCloud allocator (``ipam: alibabacloud``): pod IPs for CiliumNodes out of
ENIs on their ECS instances.

:class:`AlibabaProvider` is AlibabaCloud's side of the shared cloud IPAM controller
(:mod:`pylium.operator.cloud_ipam`): its cache holds the ENIs, vSwitches and security groups of
``alibaba-cloud-vpc-id`` (DescribeNetworkInterfaces, DescribeVSwitches,
DescribeSecurityGroups), refreshed every minute and, for the instance concerned, after each
allocation; instance-type limits come from DescribeInstanceTypes (asked once a minute at
most per unknown type, no shipped table). Allocation assigns addresses on existing ENIs
(AssignPrivateIpAddresses) and creates new ones in the vSwitch with the most free addresses
among ``vswitches``/``vswitch-tags`` (CreateNetworkInterface tagged with the cluster and the
ENI's index, AttachNetworkInterface, waiting until it is ``InUse``; an ENI that fails to
attach is deleted). With ``alibaba-cloud-release-excess-ips`` excess IPs go back
(UnassignPrivateIpAddresses) through upstream's handshake. The controller writes
``spec.ipam.pool`` (IP -> ENI id), ``status.alibaba-cloud.enis`` and
``status.ipam.operator-status.error``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pylium.adapters.alibabacloud import AlibabaCloudAPI, AlibabaCloudError
from pylium.adapters.cloudapi import Metrics
from pylium.adapters.store.api import Store
from pylium.core.ipam.cloud import alibabacloud as ali
from pylium.core.ipam.cloud.plan import (
    CreateInterface,
    Interface,
    Limits,
    NodeSpec,
    SecurityGroup,
    Subnet,
    Tags,
    security_groups_for,
)
from pylium.model.config import OperatorSettings
from pylium.operator.cloud_ipam import RESYNC_SECONDS, CloudIPAMController, InstanceLimits

log = logging.getLogger(__name__)

MANAGED_TAG = ("io.cilium/cilium-managed", "true")
CLUSTER_TAG = "io.cilium/cluster-name"


class AlibabaProvider:
    """AlibabaCloud behind the cloud IPAM controller: the ECS/VPC cache and calls."""

    mode = "alibabacloud"
    spec_key = "alibaba-cloud"
    cloud = "AlibabaCloud"
    create_interfaces = True

    def __init__(
        self, api: AlibabaCloudAPI, settings: OperatorSettings, clock: Callable[[], float]
    ) -> None:
        self.api = api
        self.clock = clock
        self.release_excess_ips = settings.alibaba_cloud_release_excess_ips
        self.tags: Tags = tuple(sorted([MANAGED_TAG, (CLUSTER_TAG, settings.cluster_name)]))
        self.enis: list[ali.ECSInterface] = []
        self._subnets: list[Subnet] = []
        self.groups: list[SecurityGroup] = []
        self.limits = InstanceLimits(
            lambda types: self.api.instance_type_limits(types), clock, None
        )

    @property
    def metrics(self) -> Metrics:
        return self.api.metrics

    def refresh(self) -> None:
        self.enis = self.api.interfaces()
        self._subnets = self.api.vswitches()
        self.groups = self.api.security_groups()

    def refresh_instance(self, instance_id: str) -> None:
        fresh = self.api.interfaces(instance_id=instance_id)
        self.enis = [e for e in self.enis if e.instance_id != instance_id] + fresh
        self._subnets = self.api.vswitches()

    def node_spec(self, spec: Mapping[str, Any]) -> NodeSpec:
        return ali.AlibabaSpec.from_cilium_node(spec)

    def interfaces_of(self, spec: NodeSpec) -> list[Interface]:
        return ali.interfaces_of(self.enis, spec.instance_id)

    def subnets(self) -> list[Subnet]:
        return self._subnets

    def limits_of(self, spec: NodeSpec) -> Limits | None:
        return self.limits.get(spec.instance_type)

    def security_groups_for(self, spec: NodeSpec, interfaces: list[Interface]) -> tuple[str, ...]:
        return security_groups_for(spec, self.groups, interfaces)

    def subnet_of(self, interface_id: str) -> str:
        return next((e.vswitch_id for e in self.enis if e.id == interface_id), "")

    def assign(self, spec: NodeSpec, interface_id: str, count: int) -> None:
        self.api.assign(interface_id, count)

    def unassign(self, spec: NodeSpec, interface_id: str, ips: list[str]) -> None:
        self.api.unassign(interface_id, ips)

    def create_interface(self, spec: NodeSpec, create: CreateInterface) -> None:
        eni_id = self.api.create_interface(
            vswitch_id=create.subnet_id,
            groups=create.security_groups,
            count=create.count,
            description=f"Cilium-CNI ({spec.instance_id})",
            tags=tuple(sorted((*self.tags, (ali.ENI_INDEX_TAG, str(create.index))))),
        )
        try:
            self.api.attach(eni_id, spec.instance_id)
        except AlibabaCloudError:
            try:
                self.api.delete_interface(eni_id)
            except AlibabaCloudError as err:
                log.warning("could not delete unattached ENI %s: %s", eni_id, err)
            raise

    def status_of(self, spec: NodeSpec, interfaces: list[Interface]) -> dict[str, Any]:
        return {
            "enis": ali.status_enis(
                interfaces, {e.id: e for e in self.enis}, {s.id: s for s in self._subnets}
            )
        }


class AlibabaIPAMController(CloudIPAMController):
    """The shared controller over :class:`AlibabaProvider`."""

    def __init__(
        self,
        store: Store,
        api: AlibabaCloudAPI,
        settings: OperatorSettings,
        *,
        resync: float = RESYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alibaba = AlibabaProvider(api, settings, clock)
        super().__init__(store, self.alibaba, settings, resync=resync, clock=clock)
        self.api = api
