"""L3: the AlibabaCloud ECS and VPC RPC APIs as the AlibabaCloud IPAM operator uses them
(``requests``, no Alibaba SDK), signed, rate-limited and retried.

Every call is a signed RPC request (:func:`pylium.core.ipam.cloud.alibabacloud.signed_params`)
POSTed with its parameters in the query string, to ``https://ecs.<region>.aliyuncs.com`` (ECS,
version 2014-05-26) or ``https://vpc.<region>.aliyuncs.com`` (VPC, 2016-04-28); credentials
are ``ALIBABA_CLOUD_ACCESS_KEY_ID``/``ALIBABA_CLOUD_ACCESS_KEY_SECRET``. Error bodies carry
``Code``/``Message``; throttling codes (``Throttling``, ``Throttling.User``, ...) are retried
with backoff behind the shared token bucket, calls counted as
``cilium_operator_alibaba_cloud_api_*``. Lists are paged with ``PageNumber``/``PageSize``.
AttachNetworkInterface is asynchronous: the ENI is polled until it is ``InUse``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from pylium.adapters.cloudapi import DEFAULT_BURST, DEFAULT_QPS, CloudAPIError, RateLimitedClient
from pylium.core.ipam.cloud import alibabacloud as ali
from pylium.core.ipam.cloud.plan import Limits, SecurityGroup, Subnet, Tags

PAGE_SIZE = 50
ATTACH_POLLS = 30


class AlibabaCloudError(CloudAPIError):
    """An ECS/VPC call failed (after retries when it was throttled)."""

    api = "AlibabaCloud"


class AlibabaCloudAPI(RateLimitedClient):
    """The ECS and VPC calls the AlibabaCloud allocator needs."""

    throttle_codes = ali.THROTTLE_CODES

    def __init__(
        self,
        *,
        region: str,
        access_key_id: str,
        access_key_secret: str,
        vpc_id: str = "",
        ecs_endpoint: str = "",
        vpc_endpoint: str = "",
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(api="alibaba_cloud", qps=qps, burst=burst, sleep=sleep)
        self.region = region
        self.key_id = access_key_id
        self.secret = access_key_secret
        self.vpc_id = vpc_id
        self.ecs = (ecs_endpoint or f"https://ecs.{region}.aliyuncs.com").rstrip("/")
        self.vpc = (vpc_endpoint or f"https://vpc.{region}.aliyuncs.com").rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.session = requests.Session()

    def call(self, action: str, params: Mapping[str, str], *, product: str = "ecs") -> Any:
        """One signed RPC call; a fresh nonce and timestamp on every attempt."""
        endpoint, version = (
            (self.vpc, ali.VPC_VERSION) if product == "vpc" else (self.ecs, ali.ECS_VERSION)
        )

        def attempt() -> Any:
            query = ali.signed_params(
                action,
                params,
                version=version,
                access_key_id=self.key_id,
                secret=self.secret,
                nonce=uuid.uuid4().hex,
                timestamp=datetime.now(UTC).strftime(ali.TIMESTAMP_FORMAT),
                method="POST",
            )
            try:
                response = self.session.post(endpoint + "/", params=query, timeout=self.timeout)
            except requests.RequestException as err:
                raise AlibabaCloudError(action, "ConnectionError", str(err)) from err
            try:
                body = response.json()
            except ValueError:
                body = {}
            if response.status_code >= 400:
                raise AlibabaCloudError(
                    action,
                    str(body.get("Code") or response.status_code),
                    str(body.get("Message") or response.text[:300]),
                )
            return body

        return self._limited(action, attempt)

    def _pages(
        self, action: str, params: Mapping[str, str], *, product: str = "ecs"
    ) -> Iterator[Any]:
        number = 1
        while True:
            page = self.call(
                action,
                {**params, "PageNumber": str(number), "PageSize": str(PAGE_SIZE)},
                product=product,
            )
            yield page
            total = int(page.get("TotalCount") or 0)
            if number * PAGE_SIZE >= total:
                return
            number += 1

    def _scope(self) -> dict[str, str]:
        return {"RegionId": self.region, **({"VpcId": self.vpc_id} if self.vpc_id else {})}

    # -- describe -----------------------------------------------------------------------------

    def interfaces(
        self, instance_id: str = "", eni_ids: tuple[str, ...] = ()
    ) -> list[ali.ECSInterface]:
        params = self._scope()
        if instance_id:
            params["InstanceId"] = instance_id
        params.update(ali.repeated("NetworkInterfaceId", eni_ids))
        return [
            eni
            for page in self._pages("DescribeNetworkInterfaces", params)
            for eni in ali.parse_interfaces(page)
        ]

    def vswitches(self) -> list[Subnet]:
        return [
            v
            for page in self._pages("DescribeVSwitches", self._scope(), product="vpc")
            for v in ali.parse_vswitches(page)
        ]

    def security_groups(self) -> list[SecurityGroup]:
        return [
            g
            for page in self._pages("DescribeSecurityGroups", self._scope())
            for g in ali.parse_security_groups(page)
        ]

    def instance_type_limits(self, types: list[str]) -> dict[str, Limits]:
        page = self.call("DescribeInstanceTypes", ali.repeated("InstanceTypes", types))
        return ali.parse_instance_types([page])

    # -- changes ------------------------------------------------------------------------------

    def assign(self, eni_id: str, count: int) -> None:
        self.call("AssignPrivateIpAddresses", ali.assign_private_ips(self.region, eni_id, count))

    def unassign(self, eni_id: str, ips: list[str]) -> None:
        self.call("UnassignPrivateIpAddresses", ali.unassign_private_ips(self.region, eni_id, ips))

    def create_interface(
        self, *, vswitch_id: str, groups: tuple[str, ...], count: int, description: str, tags: Tags
    ) -> str:
        body = self.call(
            "CreateNetworkInterface",
            ali.create_network_interface(
                region=self.region,
                vswitch_id=vswitch_id,
                security_groups=groups,
                count=count,
                description=description,
                tags=tags,
            ),
        )
        return str(body["NetworkInterfaceId"])

    def attach(self, eni_id: str, instance_id: str) -> None:
        """AttachNetworkInterface, then wait until the ENI is ``InUse``."""
        self.call(
            "AttachNetworkInterface", ali.attach_network_interface(self.region, eni_id, instance_id)
        )
        for _ in range(ATTACH_POLLS):
            found = self.interfaces(eni_ids=(eni_id,))
            if found and found[0].status == "InUse":
                return
            self._sleep(self.poll_interval)
        raise AlibabaCloudError(
            "AttachNetworkInterface", "Timeout", f"{eni_id} not InUse after {ATTACH_POLLS} polls"
        )

    def delete_interface(self, eni_id: str) -> None:
        self.call("DeleteNetworkInterface", {"RegionId": self.region, "NetworkInterfaceId": eni_id})
