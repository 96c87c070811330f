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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pylium.base.errors import PyliumError
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
DEFAULT_QPS = 4.0
"""Upstream ``limit-ipam-api-qps`` default."""
DEFAULT_BURST = 20
"""Upstream ``limit-ipam-api-burst`` default."""


class EC2Error(PyliumError):
    """An EC2 call failed (after retries when it was throttled)."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        self.operation = operation
        self.code = code
        self.message = message
        super().__init__(f"EC2 {operation}: {code}: {message}")


class TokenBucket:
    """``qps`` tokens a second, at most ``burst`` saved up; :meth:`wait` blocks for one and
    returns how long it waited. Clock and sleep are injectable for tests."""

    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("token bucket needs qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def wait(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            delay = -self._tokens / self.qps if self._tokens < 0 else 0.0
        if delay > 0:
            self._sleep(delay)
        return delay


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


@dataclass(slots=True)
class Metrics:
    """Counters under upstream's names: calls and seconds per (operation, response code),
    seconds spent waiting for the rate limiter per operation, throttled attempts."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    rate_limit_seconds: dict[str, float] = field(default_factory=dict)
    rate_limit_waits: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)

    def total_calls(self, operation: str | None = None) -> int:
        return sum(n for (op, _), n in self.calls.items() if operation in (None, op))

    def as_prometheus(self) -> dict[str, float]:
        """Samples in Prometheus text naming: ``name{labels}`` -> value."""
        out: dict[str, float] = {}
        base = "cilium_operator_ec2_api_duration_seconds"
        for (op, code), n in sorted(self.calls.items()):
            labels = f'{{operation="{op}",response_code="{code}"}}'
            out[f"{base}_count{labels}"] = n
            out[f"{base}_sum{labels}"] = self.seconds.get((op, code), 0.0)
        for op, secs in sorted(self.rate_limit_seconds.items()):
            out[f'cilium_operator_ec2_api_rate_limit_duration_seconds_sum{{operation="{op}"}}'] = (
                secs
            )
        for op, n in sorted(self.throttled.items()):
            out[f'cilium_operator_ec2_api_throttled_total{{operation="{op}"}}'] = n
        return out


def _tag_specs(tags: Tags) -> list[dict[str, Any]]:
    return [
        {
            "ResourceType": "network-interface",
            "Tags": [{"Key": k, "Value": v} for k, v in tags],
        }
    ]


def _tags(raw: list[dict[str, str]] | None) -> Tags:
    return tags_of({t["Key"]: t["Value"] for t in raw or []})


class EC2API:
    """The EC2 calls the ENI allocator needs, over any boto3-shaped EC2 client."""

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
        self.client = client
        self.bucket = TokenBucket(qps, burst, sleep=sleep)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_results = max_results
        self._sleep = sleep
        self.metrics = Metrics()
        self._lock = threading.Lock()

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

    def _record(self, operation: str, code: str, seconds: float) -> None:
        with self._lock:
            key = (operation, code)
            self.metrics.calls[key] = self.metrics.calls.get(key, 0) + 1
            self.metrics.seconds[key] = self.metrics.seconds.get(key, 0.0) + seconds

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """``client.<operation>(**params)``, rate-limited, retried when throttled."""
        from botocore.exceptions import ClientError, EndpointConnectionError

        for attempt in range(self.max_retries + 1):
            method = getattr(self.client, operation)
            waited = self.bucket.wait()
            if waited:
                with self._lock:
                    rl = self.metrics.rate_limit_seconds
                    rl[operation] = rl.get(operation, 0.0) + waited
                    rw = self.metrics.rate_limit_waits
                    rw[operation] = rw.get(operation, 0) + 1
            start = time.monotonic()
            try:
                result: dict[str, Any] = method(**params)
            except ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", "Unknown"))
                message = str(err.response.get("Error", {}).get("Message", err))
                self._record(operation, code, time.monotonic() - start)
                if code in THROTTLE_CODES and attempt < self.max_retries:
                    with self._lock:
                        th = self.metrics.throttled
                        th[operation] = th.get(operation, 0) + 1
                    delay = self.backoff * (2**attempt)
                    log.info("EC2 throttled; backing off", extra={"op": operation, "s": delay})
                    self._sleep(delay)
                    continue
                raise EC2Error(operation, code, message) from err
            except EndpointConnectionError as err:
                self._record(operation, "ConnectionError", time.monotonic() - start)
                raise EC2Error(operation, "ConnectionError", str(err)) from err
            self._record(operation, "OK", time.monotonic() - start)
            return result
        raise AssertionError("unreachable")

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
