"""L5: the ENI allocator (``ipam: eni``): pod IPs for CiliumNodes out of AWS ENIs.

The only component that talks to EC2. :class:`EC2Provider` is the AWS side of the shared
cloud IPAM controller (:mod:`pylium.operator.cloud_ipam`, which runs the one watermark state
machine of :mod:`pylium.core.ipam.cloud.plan`): it keeps a cache of the account's network
interfaces, subnets, VPCs and security groups (DescribeNetworkInterfaces/Subnets/Vpcs/
SecurityGroups), refreshed every ``resync`` seconds (a minute, as upstream) and, for the
instance concerned, after each allocation; it assigns addresses with
AssignPrivateIpAddresses on existing ENIs and creates new ones with CreateNetworkInterface +
AttachNetworkInterface + ModifyNetworkInterfaceAttribute, tagged with ``eni-tags`` and the GC
tags. The controller writes ``spec.ipam.pool`` (IP -> ENI id as its ``resource``),
``status.eni.enis`` and ``status.ipam.operator-status.error``.

With ``aws-release-excess-ips`` excess IPs go back through upstream's handshake in
``status.ipam.release-ips``. Unattached ENIs carrying every ``eni-gc-tags`` tag (default
``io.cilium/cilium-managed=true``, ``io.cilium/cluster-name=<cluster-name>``) are deleted when
two GC passes, ``eni-gc-interval`` apart, find them unattached. :meth:`ENIController.collector`
serves upstream's ``cilium_operator_ec2_api_*`` and ``cilium_operator_ipam_*_ops`` metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pylium.adapters.cloudapi import Metrics
from pylium.adapters.ec2 import EC2API, EC2Error, Interface
from pylium.adapters.store.api import Store
from pylium.core.ipam.cloud.plan import CreateInterface, NodeSpec
from pylium.core.ipam.eni.limits import STATIC_LIMITS, Limits
from pylium.core.ipam.eni.plan import (
    ENI,
    ENISpec,
    SecurityGroup,
    Subnet,
    Tags,
    matches_all,
    security_groups_for,
)
from pylium.model.config import OperatorSettings
from pylium.operator.cloud_ipam import (
    RESYNC_SECONDS,
    CloudIPAMController,
    InstanceLimits,
    NodeReport,
)

log = logging.getLogger(__name__)

__all__ = ["EC2Provider", "ENIController", "NodeReport", "gc_tags"]

MANAGED_TAG = ("io.cilium/cilium-managed", "true")
CLUSTER_TAG = "io.cilium/cluster-name"


def gc_tags(settings: OperatorSettings) -> Tags:
    """``eni-gc-tags``, or upstream's default: managed by Cilium, in this cluster."""
    if settings.eni_gc_tags:
        return tuple(sorted(settings.eni_gc_tags))
    return tuple(sorted([MANAGED_TAG, (CLUSTER_TAG, settings.cluster_name)]))


class EC2Provider:
    """AWS ENI behind the cloud IPAM controller: the EC2 cache and calls."""

    mode = "eni"
    spec_key = "eni"
    cloud = "EC2"
    create_interfaces = True

    def __init__(self, api: EC2API, settings: OperatorSettings, clock: Callable[[], float]) -> None:
        self.api = api
        self.clock = clock
        self.release_excess_ips = settings.aws_release_excess_ips
        self.gc_tags = gc_tags(settings)
        self.create_tags: Tags = tuple(sorted(set(settings.eni_tags) | set(self.gc_tags)))
        self.limits = InstanceLimits(
            lambda types: self.api.instance_type_limits(types), clock, STATIC_LIMITS
        )
        self.interfaces: list[Interface] = []
        self._subnets: list[Subnet] = []
        self.vpcs: dict[str, list[str]] = {}
        self.groups: list[SecurityGroup] = []

    @property
    def metrics(self) -> Metrics:
        return self.api.metrics

    # -- the cache ----------------------------------------------------------------------------

    def refresh(self) -> None:
        self.interfaces = self.api.interfaces()
        self._subnets = self.api.subnets()
        self.vpcs = self.api.vpcs()
        self.groups = self.api.security_groups()

    def refresh_instance(self, instance_id: str) -> None:
        fresh = self.api.interfaces([{"Name": "attachment.instance-id", "Values": [instance_id]}])
        self.interfaces = [i for i in self.interfaces if i.instance_id != instance_id] + fresh
        self._subnets = self.api.subnets()

    def node_spec(self, spec: Mapping[str, Any]) -> NodeSpec:
        return ENISpec.from_cilium_node(spec)

    def interfaces_of(self, spec: NodeSpec) -> list[ENI]:
        return self.enis_of(spec.instance_id)

    def enis_of(self, instance_id: str) -> list[ENI]:
        return sorted(
            (i.eni for i in self.interfaces if i.instance_id == instance_id and instance_id),
            key=lambda e: e.number,
        )

    def subnets(self) -> list[Subnet]:
        return self._subnets

    def limits_of(self, spec: NodeSpec) -> Limits | None:
        return self.limits.get(spec.instance_type)

    def security_groups_for(self, spec: NodeSpec, interfaces: list[ENI]) -> tuple[str, ...]:
        return security_groups_for(spec, self.groups, interfaces)

    def subnet_of(self, interface_id: str) -> str:
        return next((i.eni.subnet_id for i in self.interfaces if i.eni.id == interface_id), "")

    # -- changes ------------------------------------------------------------------------------

    def assign(self, spec: NodeSpec, interface_id: str, count: int) -> None:
        self.api.assign(interface_id, count)

    def unassign(self, spec: NodeSpec, interface_id: str, ips: list[str]) -> None:
        self.api.unassign(interface_id, ips)

    def create_interface(self, spec: NodeSpec, create: CreateInterface) -> None:
        eni_id = self.api.create_interface(
            subnet_id=create.subnet_id,
            count=create.count,
            groups=create.security_groups,
            description=f"Cilium-CNI ({spec.instance_id})",
            tags=self.create_tags,
        )
        try:
            self.api.attach(
                eni_id,
                spec.instance_id,
                create.index,
                delete_on_termination=spec.delete_on_termination,
            )
        except EC2Error:
            # Not attached: delete it now rather than leave it to the GC.
            try:
                self.api.delete_interface(eni_id)
            except EC2Error as err:
                log.warning("could not delete unattached ENI %s: %s", eni_id, err)
            raise

    # -- CiliumNode status ----------------------------------------------------------------------

    def status_of(self, spec: NodeSpec, interfaces: list[ENI]) -> dict[str, Any]:
        """``status.eni.enis``."""
        subnets = {s.id: s for s in self._subnets}
        out: dict[str, Any] = {}
        for e in interfaces:
            subnet = subnets.get(e.subnet_id)
            iface = next((i for i in self.interfaces if i.eni.id == e.id), None)
            vpc_id = iface.vpc_id if iface else spec.vpc_id
            cidrs = self.vpcs.get(vpc_id, [])
            out[e.id] = {
                "id": e.id,
                "ip": e.primary_ip,
                "mac": e.mac,
                "number": e.number,
                "availability-zone": iface.availability_zone if iface else "",
                "subnet": {"id": e.subnet_id, "cidr": subnet.cidr if subnet else ""},
                "vpc": {"id": vpc_id, "primary-cidr": cidrs[0] if cidrs else "", "cidrs": cidrs},
                "addresses": list(e.addresses),
                "security-groups": list(e.security_groups),
                "tags": dict(e.tags),
            }
        return {"enis": out}


class ENIController(CloudIPAMController):
    """The shared controller over :class:`EC2Provider`, plus the ENI garbage collector."""

    def __init__(
        self,
        store: Store,
        api: EC2API,
        settings: OperatorSettings,
        *,
        resync: float = RESYNC_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ec2 = EC2Provider(api, settings, clock)
        super().__init__(store, self.ec2, settings, resync=resync, clock=clock)
        self.api = api
        self._gc_last = clock()
        self._gc_suspects: set[str] = set()

    @property
    def gc_tags(self) -> Tags:
        return self.ec2.gc_tags

    @property
    def limits(self) -> dict[str, Limits]:
        return self.ec2.limits.known

    def enis_of(self, instance_id: str) -> list[ENI]:
        return self.ec2.enis_of(instance_id)

    # -- garbage collection ---------------------------------------------------------------------

    def after_pass(self) -> None:
        interval = self.settings.eni_gc_interval.total_seconds()
        if interval <= 0 or self.clock() - self._gc_last < interval:
            return
        self._gc_last = self.clock()
        self.gc()

    def gc(self) -> list[str]:
        """Delete unattached ENIs carrying every GC tag that the previous pass also found
        unattached (an ENI between create and attach is never taken). Returns the deleted."""
        available = self.api.interfaces(
            [{"Name": "status", "Values": ["available"]}]
            + [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.gc_tags]
        )
        now = {i.eni.id for i in available if matches_all(i.eni.tags, self.gc_tags)}
        doomed = sorted(now & self._gc_suspects)
        deleted = []
        for eni_id in doomed:
            try:
                self.api.delete_interface(eni_id)
                deleted.append(eni_id)
            except EC2Error as err:
                log.warning("ENI GC: %s", err)
        if deleted:
            log.info("garbage-collected unattached ENIs", extra={"enis": deleted})
            self.ec2.interfaces = [i for i in self.ec2.interfaces if i.eni.id not in deleted]
        self._gc_suspects = now - set(deleted)
        return deleted
