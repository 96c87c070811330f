"""L2: ENI IPAM decisions: the shared cloud state machine under AWS's names.

The watermarks, allocation and release plans are :mod:`pylium.core.ipam.cloud.plan`'s (one
piece of code for AWS, Azure and AlibabaCloud); this module reads ``CiliumNode.spec.eni``
into its :class:`~pylium.core.ipam.cloud.plan.NodeSpec` and keeps the ENI names the operator,
the agent and the tests use (``ENI`` is an interface, ``CreateENI`` a new one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pylium.core.ipam.cloud.plan import (
    DEFAULT_PRE_ALLOCATE,
    AllocationPlan,
    AssignIPs,
    CreateInterface,
    Interface,
    NodeSpec,
    ReleaseState,
    ReleaseStep,
    SecurityGroup,
    Subnet,
    Tags,
    Watermarks,
    candidate_subnets,
    capacity,
    excess_ips,
    matches_all,
    needed_ips,
    plan_allocation,
    plan_release,
    pool_of,
    release_step,
    security_groups_for,
    tags_of,
    usable_interfaces,
)

ENI = Interface
CreateENI = CreateInterface
usable_enis = usable_interfaces

__all__ = [
    "DEFAULT_PRE_ALLOCATE",
    "ENI",
    "AllocationPlan",
    "AssignIPs",
    "CreateENI",
    "ENISpec",
    "ReleaseState",
    "ReleaseStep",
    "SecurityGroup",
    "Subnet",
    "Tags",
    "Watermarks",
    "candidate_subnets",
    "capacity",
    "excess_ips",
    "matches_all",
    "needed_ips",
    "plan_allocation",
    "plan_release",
    "pool_of",
    "release_step",
    "security_groups_for",
    "tags_of",
    "usable_enis",
]


@dataclass(frozen=True, slots=True)
class ENISpec(NodeSpec):
    """``CiliumNode.spec.eni`` (plus ``spec.instance-id``): where a node's ENIs may come from."""

    @classmethod
    def from_cilium_node(cls, spec: Mapping[str, Any]) -> ENISpec:
        eni = spec.get("eni") or {}
        index = eni.get("first-interface-index")
        return cls(
            instance_id=str(spec.get("instance-id") or eni.get("instance-id") or ""),
            instance_type=str(eni.get("instance-type") or ""),
            vpc_id=str(eni.get("vpc-id") or ""),
            availability_zone=str(eni.get("availability-zone") or ""),
            node_subnet_id=str(eni.get("node-subnet-id") or ""),
            first_interface_index=int(index) if index is not None else 0,
            subnet_ids=tuple(eni.get("subnet-ids") or ()),
            subnet_tags=tags_of(eni.get("subnet-tags")),
            security_groups=tuple(eni.get("security-groups") or ()),
            security_group_tags=tags_of(eni.get("security-group-tags")),
            exclude_interface_tags=tags_of(eni.get("exclude-interface-tags")),
            delete_on_termination=bool(eni.get("delete-on-termination", True)),
        )
