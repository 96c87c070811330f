"""The ENI lab's pure pieces: when a lab models a VPC, its pods subnet, its device names."""

from __future__ import annotations

import ipaddress

import pytest

from pylium.base.errors import LabError
from pylium.lab import vpc


def test_a_lab_models_a_vpc_only_for_eni_ipam() -> None:
    assert vpc.enabled({"ipam": "eni"})
    assert not vpc.enabled({"ipam": "cluster-pool"})
    assert not vpc.enabled({})


def test_pods_subnet_follows_the_underlay() -> None:
    assert vpc.pods_cidr(ipaddress.IPv4Network("192.168.250.0/24")) == ipaddress.IPv4Network(
        "100.64.250.0/24"
    )
    assert vpc.pods_cidr(ipaddress.IPv4Network("172.30.7.0/24")) == ipaddress.IPv4Network(
        "100.64.7.0/24"
    )


def test_eni_device_names_fit_the_kernel() -> None:
    assert vpc.fabric_port("n1", 2) == "n1e2"
    with pytest.raises(LabError, match="longer than 15"):
        vpc.fabric_port("averylongnode1", 12)


def test_the_launcher_avoids_reserved_addresses() -> None:
    # The launcher runs inside moto's server; its rule is checked here on its own.
    namespace: dict[str, object] = {}
    source = vpc.MOTO_LAUNCHER.split("def _reserved", 1)[1].split("def _unique", 1)[0]
    exec("import ipaddress\ndef _reserved" + source, namespace)
    reserved = namespace["_reserved"]
    assert callable(reserved)
    cidr = "100.64.250.0/24"
    picks = [f"100.64.250.{i}" for i in (0, 1, 2, 3, 4, 254, 255)]
    assert [reserved(ip, cidr) for ip in picks] == [True, True, True, True, False, False, True]
