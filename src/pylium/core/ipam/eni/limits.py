"""L2: per instance-type ENI limits: interfaces per instance, IPv4/IPv6 addresses per interface.

Shipped as data (the values EC2's DescribeInstanceTypes reports under ``NetworkInfo``, as
upstream's static table held them before 1.18) and refreshable: the operator merges what
DescribeInstanceTypes returns (:func:`from_describe_instance_types`) over this table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pylium.core.ipam.cloud.plan import Limits

__all__ = ["STATIC_LIMITS", "Limits", "from_describe_instance_types"]


def _family(sizes: dict[str, tuple[int, int]]) -> dict[str, Limits]:
    return {name: Limits(adapters=a, ipv4=v4, ipv6=v4) for name, (a, v4) in sizes.items()}


_NITRO_GENERAL = {
    "large": (3, 10),
    "xlarge": (4, 15),
    "2xlarge": (4, 15),
    "4xlarge": (8, 30),
    "8xlarge": (8, 30),
    "12xlarge": (8, 30),
    "16xlarge": (15, 50),
    "24xlarge": (15, 50),
}

STATIC_LIMITS: dict[str, Limits] = {
    **_family({"t2.nano": (2, 2), "t2.micro": (2, 2), "t2.small": (3, 4), "t2.medium": (3, 6)}),
    **_family({"t2.large": (3, 12), "t2.xlarge": (3, 15), "t2.2xlarge": (3, 15)}),
    **_family({"t3.nano": (2, 2), "t3.micro": (2, 2), "t3.small": (3, 4), "t3.medium": (3, 6)}),
    **_family({"t3.large": (3, 12), "t3.xlarge": (4, 15), "t3.2xlarge": (4, 15)}),
    **_family({"t3a.micro": (2, 2), "t3a.small": (2, 4), "t3a.medium": (3, 6)}),
    **_family({"t3a.large": (3, 12), "t3a.xlarge": (4, 15), "t3a.2xlarge": (4, 15)}),
    **_family({f"m5.{size}": v for size, v in _NITRO_GENERAL.items()}),
    **_family({f"m5a.{size}": v for size, v in _NITRO_GENERAL.items()}),
    **_family({f"m6i.{size}": v for size, v in _NITRO_GENERAL.items()}),
    **_family({f"c5.{size}": v for size, v in _NITRO_GENERAL.items() if size != "16xlarge"}),
    **_family({"c5.9xlarge": (8, 30), "c5.18xlarge": (15, 50)}),
    **_family({f"r5.{size}": v for size, v in _NITRO_GENERAL.items()}),
    **_family({"m4.large": (2, 10), "m4.xlarge": (4, 15), "m4.2xlarge": (4, 15)}),
}
"""The table shipped with pylium (a selection of common types; DescribeInstanceTypes adds the
rest at run time)."""


def from_describe_instance_types(pages: Iterable[Mapping[str, Any]]) -> dict[str, Limits]:
    """Limits out of DescribeInstanceTypes response pages (``InstanceTypes[].NetworkInfo``)."""
    out: dict[str, Limits] = {}
    for page in pages:
        for item in page.get("InstanceTypes") or []:
            info = item.get("NetworkInfo") or {}
            if "MaximumNetworkInterfaces" not in info or "Ipv4AddressesPerInterface" not in info:
                continue
            out[str(item["InstanceType"])] = Limits(
                adapters=int(info["MaximumNetworkInterfaces"]),
                ipv4=int(info["Ipv4AddressesPerInterface"]),
                ipv6=int(info.get("Ipv6AddressesPerInterface") or 0),
            )
    return out
