"""L3: the EC2 API as the ENI operator uses it (boto3), rate-limited and retried.

Every call waits for a token of a client-side token bucket (``limit-ipam-api-qps``,
``limit-ipam-api-burst``, as upstream's operator) and is retried with exponential backoff
when EC2 throttles (``RequestLimitExceeded``, ``Throttling``, ...). Calls are counted per
operation and response code under upstream's metric names
(``cilium_operator_ec2_api_duration_seconds``,
``cilium_operator_ec2_api_rate_limit_duration_seconds``) in plain counters
(:attr:`EC2API.metrics`), which the operator serves through prometheus-client.
Responses come back as the core's types (:mod:`pylium.core.ipam.eni.plan`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pylium.adapters.cloudapi import (
    DEFAULT_BURST,
    DEFAULT_QPS,
    CloudAPIError,
    Metrics,
    RateLimitedClient,
    TokenBucket,
)
from pylium.core.ipam.eni.limits import Limits, from_describe_instance_types
from pylium.core.ipam.eni.plan import ENI, SecurityGroup, Subnet, Tags, tags_of

log = logging.getLogger(__name__)

THROTTLE_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
    }
)


class EC2Error(CloudAPIError):
    """An EC2 call failed (after retries when it was throttled)."""

    api = "EC2"


@dataclass(frozen=True, slots=True)
class Interface:
    """A network interface as DescribeNetworkInterfaces shows it."""

    eni: ENI
    status: str
    """``available`` (unattached), ``in-use``, ..."""
    vpc_id: str
    availability_zone: str
    instance_id: str = ""
    attachment_id: str = ""


def _tag_specs(tags: Tags) -> list[dict[str, Any]]:
    return [
        {
            "ResourceType": "network-interface",
            "Tags": [{"Key": k, "Value": v} for k, v in tags],
        }
    ]


def _tags(raw: list[dict[str, str]] | None) -> Tags:
    return tags_of({t["Key"]: t["Value"] for t in raw or []})


__all__ = ["DEFAULT_BURST", "DEFAULT_QPS", "EC2API", "EC2Error", "Metrics", "TokenBucket"]


class EC2API(RateLimitedClient):
    """The EC2 calls the ENI allocator needs, over any boto3-shaped EC2 client."""

    throttle_codes = THROTTLE_CODES

    def __init__(
        self,
        client: Any,
        *,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        max_retries: int = 8,
        backoff: float = 0.05,
        max_results: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            api="ec2", qps=qps, burst=burst, max_retries=max_retries, backoff=backoff, sleep=sleep
        )
        self.client = client
        self.max_results = max_results

    @classmethod
    def connect(
        cls,
        *,
        region: str,
        endpoint_url: str = "",
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        max_results: int = 0,
    ) -> EC2API:
        """A boto3 client for ``region`` (credentials from the usual AWS environment);
        ``endpoint_url`` is ``ec2-api-endpoint``."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=endpoint_url or None,
            # Our own retries count throttling; boto's would hide it.
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        return cls(client, qps=qps, burst=burst, max_results=max_results)

    # -- the call wrapper -------------------------------------------------------------------

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """``client.<operation>(**params)``, rate-limited, retried when throttled."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        def attempt() -> dict[str, Any]:
            try:
                result: dict[str, Any] = getattr(self.client, operation)(**params)
            except ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", "Unknown"))
                message = str(err.response.get("Error", {}).get("Message", err))
                raise EC2Error(operation, code, message) from err
            except EndpointConnectionError as err:
                raise EC2Error(operation, "ConnectionError", str(err)) from err
            return result

        return self._limited(operation, attempt)

    def _pages(self, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        token = ""
        if self.max_results and "MaxResults" not in params:
            params["MaxResults"] = self.max_results
        while True:
            extra = {"NextToken": token} if token else {}
            page = self.call(operation, **params, **extra)
            yield page
            token = str(page.get("NextToken") or "")
            if not token or not page.get(key):
                return

    # -- describe ---------------------------------------------------------------------------

    def interfaces(self, filters: list[dict[str, Any]] | None = None) -> list[Interface]:
        out = []
        for page in self._pages(
            "describe_network_interfaces",
            "NetworkInterfaces",
            Filters=filters or [],
        ):
            for raw in page.get("NetworkInterfaces") or []:
                attachment = raw.get("Attachment") or {}
                ips = raw.get("PrivateIpAddresses") or []
                primary = next(
                    (p["PrivateIpAddress"] for p in ips if p.get("Primary")),
                    raw.get("PrivateIpAddress", ""),
                )
                eni = ENI(
                    id=raw["NetworkInterfaceId"],
                    number=int(attachment.get("DeviceIndex") or 0),
                    subnet_id=raw.get("SubnetId", ""),
                    primary_ip=primary,
                    addresses=tuple(
                        p["PrivateIpAddress"] for p in ips if not p.get("Primary", False)
                    ),
                    security_groups=tuple(g["GroupId"] for g in raw.get("Groups") or []),
                    tags=_tags(raw.get("TagSet")),
                    mac=raw.get("MacAddress", ""),
                )
                out.append(
                    Interface(
                        eni=eni,
                        status=raw.get("Status", ""),
                        vpc_id=raw.get("VpcId", ""),
                        availability_zone=raw.get("AvailabilityZone", ""),
                        instance_id=attachment.get("InstanceId", ""),
                        attachment_id=attachment.get("AttachmentId", ""),
                    )
                )
        return out

    def subnets(self) -> list[Subnet]:
        return [
            Subnet(
                id=s["SubnetId"],
                vpc_id=s["VpcId"],
                availability_zone=s["AvailabilityZone"],
                cidr=s["CidrBlock"],
                available=int(s["AvailableIpAddressCount"]),
                tags=_tags(s.get("Tags")),
            )
            for page in self._pages("describe_subnets", "Subnets")
            for s in page.get("Subnets") or []
        ]

    def vpcs(self) -> dict[str, list[str]]:
        """VPC id -> its CIDRs (the primary first)."""
        out: dict[str, list[str]] = {}
        for page in self._pages("describe_vpcs", "Vpcs"):
            for v in page.get("Vpcs") or []:
                cidrs = [v["CidrBlock"]] + [
                    a["CidrBlock"]
                    for a in v.get("CidrBlockAssociationSet") or []
                    if a["CidrBlock"] != v["CidrBlock"]
                ]
                out[v["VpcId"]] = cidrs
        return out

    def security_groups(self) -> list[SecurityGroup]:
        return [
            SecurityGroup(g["GroupId"], g.get("VpcId", ""), _tags(g.get("Tags")))
            for page in self._pages("describe_security_groups", "SecurityGroups")
            for g in page.get("SecurityGroups") or []
        ]

    def instance_type_limits(self, types: list[str] | None = None) -> dict[str, Limits]:
        """Limits of ``types`` (every type when None) from DescribeInstanceTypes."""
        params: dict[str, Any] = {"InstanceTypes": types} if types else {}
        return from_describe_instance_types(
            self._pages("describe_instance_types", "InstanceTypes", **params)
        )

    # -- changes ----------------------------------------------------------------------------

    def create_interface(
        self,
        *,
        subnet_id: str,
        count: int,
        groups: tuple[str, ...],
        description: str,
        tags: Tags,
    ) -> str:
        params: dict[str, Any] = {
            "SubnetId": subnet_id,
            "Description": description,
            "TagSpecifications": _tag_specs(tags),
        }
        if groups:
            params["Groups"] = list(groups)
        if count > 0:
            params["SecondaryPrivateIpAddressCount"] = count
        raw = self.call("create_network_interface", **params)
        return str(raw["NetworkInterface"]["NetworkInterfaceId"])

    def attach(
        self, eni_id: str, instance_id: str, index: int, *, delete_on_termination: bool
    ) -> str:
        raw = self.call(
            "attach_network_interface",
            NetworkInterfaceId=eni_id,
            InstanceId=instance_id,
            DeviceIndex=index,
        )
        attachment = str(raw["AttachmentId"])
        if delete_on_termination:
            self.call(
                "modify_network_interface_attribute",
                NetworkInterfaceId=eni_id,
                Attachment={"AttachmentId": attachment, "DeleteOnTermination": True},
            )
        return attachment

    def assign(self, eni_id: str, count: int) -> None:
        self.call(
            "assign_private_ip_addresses",
            NetworkInterfaceId=eni_id,
            SecondaryPrivateIpAddressCount=count,
        )

    def unassign(self, eni_id: str, ips: list[str]) -> None:
        self.call(
            "unassign_private_ip_addresses", NetworkInterfaceId=eni_id, PrivateIpAddresses=ips
        )

    def delete_interface(self, eni_id: str) -> None:
        self.call("delete_network_interface", NetworkInterfaceId=eni_id)
