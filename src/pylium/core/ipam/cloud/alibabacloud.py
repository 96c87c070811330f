"""L2: AlibabaCloud IPAM (``ipam: alibabacloud``), pure: RPC request construction and
signing, response shapes in, interfaces and limits out.

Upstream's model (``pkg/alibabacloud/api``, ``pkg/alibabacloud/eni``): ENIs on ECS instances,
in vSwitches (not subnets) of ``alibaba-cloud-vpc-id``; more addresses on an ENI with
AssignPrivateIpAddresses, new ENIs with CreateNetworkInterface + AttachNetworkInterface,
surplus back with UnassignPrivateIpAddresses; ENIs, vSwitches and security groups from
DescribeNetworkInterfaces (ECS), DescribeVSwitches (VPC) and DescribeSecurityGroups (ECS);
per instance type ``EniQuantity`` and ``EniPrivateIpAddressQuantity`` from
DescribeInstanceTypes. The node's section is ``CiliumNode.spec.alibaba-cloud``
(``instance-type``, ``availability-zone``, ``vpc-id``, ``cidr-block``, ``vswitches``,
``vswitch-tags``, ``security-groups``, ``security-group-tags``).

Requests are Alibaba Cloud RPC calls: every parameter in the query string with
``Format=JSON``, ``Version`` (ECS 2014-05-26, VPC 2016-04-28), ``AccessKeyId``,
``SignatureMethod=HMAC-SHA1``, ``SignatureVersion=1.0``, ``SignatureNonce``, ``Timestamp``
(UTC, ``YYYY-MM-DDThh:mm:ssZ``), signed with HMAC-SHA1 over
``METHOD&%2F&percent(canonical query)`` keyed with ``<secret>&`` (:func:`sign`).

ECS has no device index: an ENI's ``number`` is 0 for the ``Primary`` one, else the
``cilium-eni-index`` tag pylium puts on the ENIs it creates, else the next free number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pylium.core.ipam.cloud.plan import (
    Interface,
    Limits,
    NodeSpec,
    SecurityGroup,
    Subnet,
    Tags,
    tags_of,
)

ECS_VERSION = "2014-05-26"
VPC_VERSION = "2016-04-28"
ENI_INDEX_TAG = "cilium-eni-index"
THROTTLE_CODES = frozenset(
    {"Throttling", "Throttling.User", "Throttling.Api", "ServiceUnavailable", "LastTokenProcessing"}
)
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def percent(value: str) -> str:
    """Alibaba's percent-encoding: RFC 3986 unreserved characters kept, everything else
    %XX (so space is %20, ``*`` is %2A and ``~`` stays)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method}&{percent('/')}&{percent(canonical_query(params))}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """The ``Signature`` parameter of an RPC request (signature version 1.0)."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def signed_params(
    action: str,
    params: Mapping[str, str],
    *,
    version: str,
    access_key_id: str,
    secret: str,
    nonce: str,
    timestamp: str,
    method: str = "POST",
) -> dict[str, str]:
    """Every query parameter of one RPC call, ``Signature`` included."""
    out = {
        "Action": action,
        "Format": "JSON",
        "Version": version,
        "AccessKeyId": access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce,
        "Timestamp": timestamp,
        **params,
    }
    out["Signature"] = sign(method, out, secret)
    return out


def repeated(name: str, values: Iterable[str]) -> dict[str, str]:
    """A list parameter: ``Name.1=a&Name.2=b``."""
    return {f"{name}.{i}": v for i, v in enumerate(values, 1)}


def tag_params(tags: Tags) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, (k, v) in enumerate(tags, 1):
        out[f"Tag.{i}.Key"] = k
        out[f"Tag.{i}.Value"] = v
    return out


# -- request builders ------------------------------------------------------------------------


def create_network_interface(
    *,
    region: str,
    vswitch_id: str,
    security_groups: Iterable[str],
    count: int,
    description: str,
    tags: Tags,
) -> dict[str, str]:
    params = {
        "RegionId": region,
        "VSwitchId": vswitch_id,
        "Description": description,
        **repeated("SecurityGroupIds", security_groups),
        **tag_params(tags),
    }
    if count > 0:
        params["SecondaryPrivateIpAddressCount"] = str(count)
    return params


def assign_private_ips(region: str, eni_id: str, count: int) -> dict[str, str]:
    return {
        "RegionId": region,
        "NetworkInterfaceId": eni_id,
        "SecondaryPrivateIpAddressCount": str(count),
    }


def unassign_private_ips(region: str, eni_id: str, ips: Iterable[str]) -> dict[str, str]:
    return {"RegionId": region, "NetworkInterfaceId": eni_id, **repeated("PrivateIpAddress", ips)}


def attach_network_interface(region: str, eni_id: str, instance_id: str) -> dict[str, str]:
    return {"RegionId": region, "NetworkInterfaceId": eni_id, "InstanceId": instance_id}


# -- responses -------------------------------------------------------------------------------


def _items(raw: Mapping[str, Any], outer: str, inner: str) -> list[Any]:
    """Alibaba wraps lists twice: ``{"VSwitches": {"VSwitch": [...]}}``."""
    return list((raw.get(outer) or {}).get(inner) or [])


def _eni_tags(raw: Mapping[str, Any]) -> Tags:
    return tags_of({t["TagKey"]: t["TagValue"] for t in _items(raw, "Tags", "Tag")})


@dataclass(frozen=True, slots=True)
class ECSInterface:
    """An ENI as DescribeNetworkInterfaces shows it."""

    id: str
    status: str
    """``Available``, ``Attaching``, ``InUse``, ``Detaching``, ..."""
    type: str
    """``Primary`` or ``Secondary``."""
    instance_id: str
    vswitch_id: str
    vpc_id: str
    zone_id: str
    primary_ip: str
    addresses: tuple[str, ...]
    security_groups: tuple[str, ...]
    tags: Tags
    mac: str


def parse_interfaces(page: Mapping[str, Any]) -> list[ECSInterface]:
    out = []
    for raw in _items(page, "NetworkInterfaceSets", "NetworkInterfaceSet"):
        ips = _items(raw, "PrivateIpSets", "PrivateIpSet")
        out.append(
            ECSInterface(
                id=str(raw["NetworkInterfaceId"]),
                status=str(raw.get("Status") or ""),
                type=str(raw.get("Type") or ""),
                instance_id=str(raw.get("InstanceId") or ""),
                vswitch_id=str(raw.get("VSwitchId") or ""),
                vpc_id=str(raw.get("VpcId") or ""),
                zone_id=str(raw.get("ZoneId") or ""),
                primary_ip=str(raw.get("PrivateIpAddress") or ""),
                addresses=tuple(
                    str(p["PrivateIpAddress"]) for p in ips if not p.get("Primary", False)
                ),
                security_groups=tuple(
                    str(g) for g in _items(raw, "SecurityGroupIds", "SecurityGroupId")
                ),
                tags=_eni_tags(raw),
                mac=str(raw.get("MacAddress") or ""),
            )
        )
    return out


def parse_vswitches(page: Mapping[str, Any]) -> list[Subnet]:
    return [
        Subnet(
            id=str(v["VSwitchId"]),
            vpc_id=str(v.get("VpcId") or ""),
            availability_zone=str(v.get("ZoneId") or ""),
            cidr=str(v.get("CidrBlock") or ""),
            available=int(v.get("AvailableIpAddressCount") or 0),
            tags=tags_of({t["Key"]: t["Value"] for t in _items(v, "Tags", "Tag")}),
        )
        for v in _items(page, "VSwitches", "VSwitch")
    ]


def parse_security_groups(page: Mapping[str, Any]) -> list[SecurityGroup]:
    return [
        SecurityGroup(str(g["SecurityGroupId"]), str(g.get("VpcId") or ""), _eni_tags(g))
        for g in _items(page, "SecurityGroups", "SecurityGroup")
    ]


def parse_instance_types(pages: Iterable[Mapping[str, Any]]) -> dict[str, Limits]:
    """Instance type -> limits (``EniQuantity`` ENIs of ``EniPrivateIpAddressQuantity``
    private IPv4 addresses, ``EniIpv6AddressQuantity`` IPv6)."""
    out: dict[str, Limits] = {}
    for page in pages:
        for t in _items(page, "InstanceTypes", "InstanceType"):
            if not t.get("EniQuantity") or not t.get("EniPrivateIpAddressQuantity"):
                continue
            out[str(t["InstanceTypeId"])] = Limits(
                adapters=int(t["EniQuantity"]),
                ipv4=int(t["EniPrivateIpAddressQuantity"]),
                ipv6=int(t.get("EniIpv6AddressQuantity") or 0),
            )
    return out


def interfaces_of(enis: Iterable[ECSInterface], instance_id: str) -> list[Interface]:
    """The instance's attached ENIs as the state machine's interfaces, numbered: Primary 0,
    then the ``cilium-eni-index`` tag, then the next free numbers (by ENI id)."""
    mine = [e for e in enis if instance_id and e.instance_id == instance_id]
    numbers: dict[str, int] = {}
    for e in mine:
        if e.type == "Primary":
            numbers[e.id] = 0
        else:
            tag = dict(e.tags).get(ENI_INDEX_TAG, "")
            if tag.isdigit() and int(tag) not in numbers.values():
                numbers[e.id] = int(tag)
    for e in sorted(mine, key=lambda e: e.id):
        if e.id not in numbers:
            numbers[e.id] = next(i for i in range(1, 1 + len(mine)) if i not in numbers.values())
    return sorted(
        (
            Interface(
                id=e.id,
                number=numbers[e.id],
                subnet_id=e.vswitch_id,
                primary_ip=e.primary_ip,
                addresses=e.addresses,
                security_groups=e.security_groups,
                tags=e.tags,
                mac=e.mac,
            )
            for e in mine
        ),
        key=lambda i: i.number,
    )


@dataclass(frozen=True, slots=True)
class AlibabaSpec(NodeSpec):
    """``CiliumNode.spec.alibaba-cloud`` plus ``spec.instance-id``."""

    spec_key: str = "alibaba-cloud"
    subnet_words: tuple[str, str] = ("vswitches", "vswitch-tags")
    cidr_block: str = ""

    @classmethod
    def from_cilium_node(cls, spec: Mapping[str, Any]) -> AlibabaSpec:
        ali = spec.get("alibaba-cloud") or {}
        return cls(
            instance_id=str(spec.get("instance-id") or ""),
            instance_type=str(ali.get("instance-type") or ""),
            vpc_id=str(ali.get("vpc-id") or ""),
            availability_zone=str(ali.get("availability-zone") or ""),
            cidr_block=str(ali.get("cidr-block") or ""),
            subnet_ids=tuple(ali.get("vswitches") or ()),
            subnet_tags=tags_of(ali.get("vswitch-tags")),
            security_groups=tuple(ali.get("security-groups") or ()),
            security_group_tags=tags_of(ali.get("security-group-tags")),
        )


def status_enis(
    interfaces: Iterable[Interface], enis: Mapping[str, ECSInterface], subnets: Mapping[str, Subnet]
) -> dict[str, Any]:
    """``status.alibaba-cloud.enis``."""
    out: dict[str, Any] = {}
    for i in interfaces:
        raw = enis.get(i.id)
        vsw = subnets.get(i.subnet_id)
        out[i.id] = {
            "network-interface-id": i.id,
            "mac-address": i.mac,
            "primary-ip-address": i.primary_ip,
            "private-ipsets": [{"private-ip-address": i.primary_ip, "primary": True}]
            + [{"private-ip-address": ip, "primary": False} for ip in i.addresses],
            "security-groupids": list(i.security_groups),
            "vpc": {"vpc-id": raw.vpc_id if raw else ""},
            "vswitch": {"vswitch-id": i.subnet_id, "cidr-block": vsw.cidr if vsw else ""},
            "tags": dict(i.tags),
            "instance-id": raw.instance_id if raw else "",
            "type": raw.type if raw else "",
        }
    return out
