"""Cloud IPAM providers, pure parts: AlibabaCloud RPC signing and request construction,
Azure ARM request bodies, both providers' response parsing and limits, and the shared state
machine's decisions where Azure differs (no new interfaces)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.adapters.store import open_store
from pylium.base.errors import ConfigError
from pylium.core.ipam.cloud import alibabacloud as ali
from pylium.core.ipam.cloud import azure
from pylium.core.ipam.cloud.plan import (
    Interface,
    Limits,
    Subnet,
    Watermarks,
    plan_allocation,
)
from pylium.core.settings import resolve
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.operator import clouds

# -- AlibabaCloud: signing ----------------------------------------------------------------------


def test_signature_matches_alibabas_published_example() -> None:
    # The worked example of Alibaba Cloud's "Request signatures" page (ECS DescribeRegions,
    # AccessKeyId testid, AccessKeySecret testsecret).
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert ali.string_to_sign("GET", params) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
        "%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z"
        "%26Version%3D2014-05-26"
    )
    assert ali.sign("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert ali.sign("POST", params, "testsecret") != ali.sign("GET", params, "testsecret")


def test_percent_encoding_is_alibabas() -> None:
    assert ali.percent("a b*c~d/e+f=") == "a%20b%2Ac~d%2Fe%2Bf%3D"
    assert ali.percent("中") == "%E4%B8%AD"


def test_signed_params_carry_every_common_parameter() -> None:
    out = ali.signed_params(
        "AssignPrivateIpAddresses",
        ali.assign_private_ips("cn-hangzhou", "eni-1", 3),
        version=ali.ECS_VERSION,
        access_key_id="id",
        secret="s",
        nonce="n1",
        timestamp="2026-12-01T00:00:00Z",
    )
    assert out["Action"] == "AssignPrivateIpAddresses"
    assert out["Version"] == "2014-05-26" and out["Format"] == "JSON"
    assert (out["SignatureMethod"], out["SignatureVersion"]) == ("HMAC-SHA1", "1.0")
    assert out["NetworkInterfaceId"] == "eni-1"
    assert out["SecondaryPrivateIpAddressCount"] == "3"
    unsigned = {k: v for k, v in out.items() if k != "Signature"}
    assert out["Signature"] == ali.sign("POST", unsigned, "s")


def test_create_and_unassign_requests_use_repeated_parameters() -> None:
    params = ali.create_network_interface(
        region="cn-hangzhou",
        vswitch_id="vsw-1",
        security_groups=["sg-1", "sg-2"],
        count=4,
        description="Cilium-CNI (i-1)",
        tags=(("cilium-eni-index", "2"), ("io.cilium/cilium-managed", "true")),
    )
    assert params == {
        "RegionId": "cn-hangzhou",
        "VSwitchId": "vsw-1",
        "Description": "Cilium-CNI (i-1)",
        "SecurityGroupIds.1": "sg-1",
        "SecurityGroupIds.2": "sg-2",
        "Tag.1.Key": "cilium-eni-index",
        "Tag.1.Value": "2",
        "Tag.2.Key": "io.cilium/cilium-managed",
        "Tag.2.Value": "true",
        "SecondaryPrivateIpAddressCount": "4",
    }
    assert "SecondaryPrivateIpAddressCount" not in ali.create_network_interface(
        region="r", vswitch_id="v", security_groups=[], count=0, description="", tags=()
    )
    assert ali.unassign_private_ips("r", "eni-1", ["10.0.0.5", "10.0.0.6"]) == {
        "RegionId": "r",
        "NetworkInterfaceId": "eni-1",
        "PrivateIpAddress.1": "10.0.0.5",
        "PrivateIpAddress.2": "10.0.0.6",
    }


# -- AlibabaCloud: responses -------------------------------------------------------------------


def _eni(id: str, kind: str, instance: str, tags: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "NetworkInterfaceId": id,
        "Status": "InUse",
        "Type": kind,
        "InstanceId": instance,
        "VSwitchId": "vsw-1",
        "VpcId": "vpc-1",
        "ZoneId": "z",
        "PrivateIpAddress": "10.0.0.2",
        "MacAddress": "00:16:3e:00:00:01",
        "PrivateIpSets": {
            "PrivateIpSet": [
                {"PrivateIpAddress": "10.0.0.2", "Primary": True},
                {"PrivateIpAddress": "10.0.0.9", "Primary": False},
            ]
        },
        "SecurityGroupIds": {"SecurityGroupId": ["sg-1"]},
        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in (tags or {}).items()]},
    }


def test_eni_numbers_primary_tag_then_next_free() -> None:
    page = {
        "NetworkInterfaceSets": {
            "NetworkInterfaceSet": [
                _eni("eni-c", "Secondary", "i-1"),
                _eni("eni-b", "Secondary", "i-1", {"cilium-eni-index": "2"}),
                _eni("eni-a", "Primary", "i-1"),
                _eni("eni-x", "Primary", "i-2"),
            ]
        }
    }
    enis = ali.parse_interfaces(page)
    assert enis[0].addresses == ("10.0.0.9",) and enis[0].security_groups == ("sg-1",)
    mine = ali.interfaces_of(enis, "i-1")
    assert [(i.id, i.number) for i in mine] == [("eni-a", 0), ("eni-c", 1), ("eni-b", 2)]
    assert ali.interfaces_of(enis, "") == []


def test_vswitches_and_instance_type_limits() -> None:
    vsw = ali.parse_vswitches(
        {
            "VSwitches": {
                "VSwitch": [
                    {
                        "VSwitchId": "vsw-1",
                        "VpcId": "vpc-1",
                        "ZoneId": "z",
                        "CidrBlock": "10.0.0.0/24",
                        "AvailableIpAddressCount": 250,
                        "Tags": {"Tag": [{"Key": "tier", "Value": "pods"}]},
                    }
                ]
            }
        }
    )
    assert vsw == [Subnet("vsw-1", "vpc-1", "z", "10.0.0.0/24", 250, (("tier", "pods"),))]
    limits = ali.parse_instance_types(
        [
            {
                "InstanceTypes": {
                    "InstanceType": [
                        {
                            "InstanceTypeId": "ecs.g6.large",
                            "EniQuantity": 3,
                            "EniPrivateIpAddressQuantity": 6,
                            "EniIpv6AddressQuantity": 1,
                        },
                        {"InstanceTypeId": "ecs.t5-lc2m1.nano", "EniQuantity": 0},
                    ]
                }
            }
        ]
    )
    assert limits == {"ecs.g6.large": Limits(adapters=3, ipv4=6, ipv6=1)}


def test_alibaba_spec_reads_vswitches_and_names_them_in_errors() -> None:
    spec = ali.AlibabaSpec.from_cilium_node(
        {
            "instance-id": "i-1",
            "alibaba-cloud": {
                "instance-type": "ecs.g6.large",
                "vpc-id": "vpc-1",
                "availability-zone": "z",
                "vswitches": ["vsw-9"],
                "security-group-tags": {"k": "v"},
            },
        }
    )
    assert spec.subnet_ids == ("vsw-9",) and spec.security_group_tags == (("k", "v"),)
    eth0 = Interface("eni-a", 0, "vsw-1", "10.0.0.2", ("10.0.0.3",) * 5)
    plan = plan_allocation(
        spec=spec,
        watermarks=Watermarks(pre_allocate=4),
        limits=Limits(adapters=3, ipv4=6),
        enis=[eth0],
        used=5,
        subnets=[Subnet("vsw-1", "vpc-1", "z", "10.0.0.0/24", 100)],
        security_groups=("sg-1",),
    )
    assert plan.total == 0
    assert "vswitches vsw-9" in plan.error
    assert ali.AlibabaSpec.from_cilium_node({"alibaba-cloud": {}}).problems() == [
        "spec.instance-id is empty",
        "spec.alibaba-cloud.instance-type is empty",
    ]


# -- Azure --------------------------------------------------------------------------------------

RG = "/subscriptions/s/resourceGroups/rg"
SUBNET = f"{RG}/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes"


def _nic(name: str, vm: str, primary: bool, ips: list[str]) -> dict[str, Any]:
    return {
        "id": f"{RG}/providers/Microsoft.Network/networkInterfaces/{name}",
        "name": name,
        "location": "westeurope",
        "etag": 'W/"1"',
        "properties": {
            "provisioningState": "Succeeded",
            "primary": primary,
            "macAddress": "00-0D-3A-00-00-01",
            "virtualMachine": {"id": vm},
            "networkSecurityGroup": {"id": f"{RG}/nsg"},
            "ipConfigurations": [
                {
                    "id": f"{RG}/ipc{i}",
                    "name": f"ipconfig{i}",
                    "etag": 'W/"1"',
                    "properties": {
                        "provisioningState": "Succeeded",
                        "privateIPAddress": ip,
                        "privateIPAllocationMethod": "Dynamic",
                        "primary": i == 0,
                        "subnet": {"id": SUBNET},
                    },
                }
                for i, ip in enumerate(ips)
            ],
        },
    }


def test_nics_become_interfaces_primary_first() -> None:
    vm = f"{RG}/providers/Microsoft.Compute/virtualMachines/vm1"
    nics = [
        azure.parse_nic(_nic("b-nic", vm, False, ["10.0.0.9"])),
        azure.parse_nic(_nic("a-nic", vm, True, ["10.0.0.4", "10.0.0.5", "10.0.0.6"])),
        azure.parse_nic(_nic("other", f"{RG}/vm2", True, ["10.0.0.7"])),
    ]
    assert nics[1].mac == "00:0d:3a:00:00:01" and nics[1].addresses == ("10.0.0.5", "10.0.0.6")
    mine = azure.interfaces_of(nics, vm.upper())
    assert [(i.number, i.primary_ip, i.addresses) for i in mine] == [
        (0, "10.0.0.4", ("10.0.0.5", "10.0.0.6")),
        (1, "10.0.0.9", ()),
    ]
    assert [i.primary_ip for i in azure.interfaces_of(nics, vm, "b-nic")] == ["10.0.0.9"]


def test_scale_set_nic_ids_name_their_vm_and_scale_set() -> None:
    vm = f"{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/pool1/virtualMachines/3"
    raw = _nic("pool1-nic", "", True, ["10.0.0.4"])
    raw["id"] = f"{vm}/networkInterfaces/pool1-nic"
    del raw["properties"]["virtualMachine"]
    nic = azure.parse_nic(raw)
    assert (nic.vm_id, nic.vmss) == (vm, "pool1")


def test_subnets_free_addresses_and_sku_limits() -> None:
    vnets = [
        {
            "id": f"{RG}/providers/Microsoft.Network/virtualNetworks/v",
            "location": "westeurope",
            "properties": {
                "subnets": [
                    {
                        "id": SUBNET,
                        "properties": {
                            "addressPrefix": "10.0.0.0/24",
                            "ipConfigurations": [{"id": "a"}, {"id": "b"}],
                        },
                    }
                ]
            },
        }
    ]
    (subnet,) = azure.parse_subnets(vnets)
    assert subnet.available == 256 - 5 - 2 and subnet.availability_zone == "westeurope"
    limits = azure.limits_from_skus(
        [
            {
                "resourceType": "virtualMachines",
                "name": "Standard_D8s_v3",
                "capabilities": [{"name": "MaxNetworkInterfaces", "value": "4"}],
            },
            {"resourceType": "disks", "name": "Premium_LRS", "capabilities": []},
        ]
    )
    assert limits == {"Standard_D8s_v3": Limits(adapters=4, ipv4=256, ipv6=256)}


def test_nic_put_body_keeps_existing_configurations_and_adds_dynamic_ones() -> None:
    raw = _nic("a-nic", "vm", True, ["10.0.0.4", "10.0.0.5"])
    body = azure.nic_with_more_addresses(raw, SUBNET, ["Cilium-0a1b2c3d"])
    assert body["location"] == "westeurope"
    assert body["properties"]["networkSecurityGroup"] == {"id": f"{RG}/nsg"}
    configs = body["properties"]["ipConfigurations"]
    assert [c["name"] for c in configs] == ["ipconfig0", "ipconfig1", "Cilium-0a1b2c3d"]
    assert configs[1]["properties"]["privateIPAddress"] == "10.0.0.5"
    assert "provisioningState" not in configs[0]["properties"]  # read-only fields dropped
    assert configs[2] == {
        "name": "Cilium-0a1b2c3d",
        "properties": {
            "privateIPAllocationMethod": "Dynamic",
            "privateIPAddressVersion": "IPv4",
            "subnet": {"id": SUBNET},
        },
    }


def test_vmss_vm_put_body_appends_to_the_named_nic_configuration() -> None:
    vm: dict[str, Any] = {
        "id": "x",
        "instanceId": "3",
        "location": "westeurope",
        "sku": {"name": "Standard_D4s_v3"},
        "properties": {
            "provisioningState": "Succeeded",
            "networkProfileConfiguration": {
                "networkInterfaceConfigurations": [
                    {
                        "name": "pool1-nic",
                        "properties": {
                            "primary": True,
                            "ipConfigurations": [{"name": "ipconfig1", "properties": {}}],
                        },
                    }
                ]
            },
        },
    }
    body = azure.vmss_vm_with_more_addresses(vm, "pool1-nic", SUBNET, ["Cilium-1", "Cilium-2"])
    configs = body["properties"]["networkProfileConfiguration"]["networkInterfaceConfigurations"]
    names = [c["name"] for c in configs[0]["properties"]["ipConfigurations"]]
    assert names == ["ipconfig1", "Cilium-1", "Cilium-2"]
    assert "id" not in body and body["sku"] == {"name": "Standard_D4s_v3"}
    # The VM as read is left alone.
    assert json.dumps(vm).count("Cilium-") == 0
    with pytest.raises(KeyError):
        azure.vmss_vm_with_more_addresses(vm, "nope", SUBNET, ["Cilium-3"])


def test_azure_plan_fills_the_nic_and_never_creates_one() -> None:
    spec = azure.AzureSpec.from_cilium_node({"instance-id": "vm1"}, vm_size="Standard_D2s_v3")
    assert spec.problems() == []
    nic = Interface("nic0", 0, SUBNET, "10.0.0.4", tuple(f"10.0.1.{i}" for i in range(250)))
    plan = plan_allocation(
        spec=spec,
        watermarks=Watermarks(pre_allocate=8),
        limits=Limits(adapters=2, ipv4=azure.INTERFACE_ADDRESS_LIMIT),
        enis=[nic],
        used=250,
        subnets=[Subnet(SUBNET, "v", "westeurope", "10.0.0.0/16", 60000)],
        security_groups=(),
        create_interfaces=False,
    )
    assert plan.total == 5 and plan.create == ()
    assert "no new interfaces in azure IPAM" in plan.error
    assert "3 of 8 IPs could not be allocated" in plan.error
    assert azure.AzureSpec.from_cilium_node({}).problems() == ["spec.instance-id is empty"]


# -- the operator's choice of controller -----------------------------------------------------


def test_cloud_modes_name_what_is_missing(tmp_path: Path) -> None:
    store = open_store(f"local:{tmp_path / 'store.sqlite'}")
    try:
        azure_settings = OperatorSettings.from_configmap(
            {"ipam": "azure", "azure-subscription-id": "s"}
        )
        with pytest.raises(ConfigError, match="azure-resource-group: must be set"):
            clouds.cloud_controller(store, azure_settings, env={})
        ali_settings = OperatorSettings.from_configmap({"ipam": "alibabacloud"})
        with pytest.raises(ConfigError, match="ALIBABA_CLOUD_REGION_ID"):
            clouds.cloud_controller(store, ali_settings, env={})
        ctl = clouds.cloud_controller(
            store,
            ali_settings,
            env={
                "ALIBABA_CLOUD_REGION_ID": "cn-beijing",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
            },
        )
        assert ctl is not None and ctl.provider.spec_key == "alibaba-cloud"
        assert ctl.provider.metrics.api == "alibaba_cloud"
        cluster_pool = OperatorSettings.from_configmap({"ipam": "cluster-pool"})
        assert clouds.cloud_controller(store, cluster_pool, env={}) is None
    finally:
        store.close()


def test_azure_helm_values_render_the_operator_keys() -> None:
    sets = [
        "azure.enabled=true",
        "ipam.mode=azure",
        "azure.subscriptionID=sub-1",
        "azure.resourceGroup=rg-1",
        "azure.userAssignedIdentityID=id-1",
        "routingMode=native",
        "ipv4NativeRoutingCIDR=10.0.0.0/8",
    ]
    resolved = resolve(sets=sets)
    op = resolved.operator
    assert (op.azure_subscription_id, op.azure_resource_group) == ("sub-1", "rg-1")
    assert op.azure_user_assigned_identity_id == "id-1"
    assert resolved.settings.ipam is IPAMMode.AZURE and resolved.settings.enable_endpoint_routes
    assert resolved.sources["azure-resource-group"] == "--set"
    # Without azure.enabled the chart renders none of them.
    off = resolve(sets=["azure.resourceGroup=rg-1"]).operator
    assert off.azure_resource_group == ""
    alibaba = OperatorSettings.from_configmap(
        {"alibaba-cloud-vpc-id": "vpc-1", "alibaba-cloud-release-excess-ips": "true"}
    )
    assert alibaba.alibaba_cloud_vpc_id == "vpc-1" and alibaba.alibaba_cloud_release_excess_ips


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=3),
    st.integers(1, 300),
    st.integers(0, 300),
    st.integers(0, 20),
    st.data(),
)
def test_azure_plan_stays_on_the_nics_within_256(
    sizes: list[int], pre: int, max_allocate: int, above: int, data: st.DataObject
) -> None:
    nics = [
        Interface(f"nic{i}", i, SUBNET, f"10.{i}.0.4", tuple(f"10.{i}.1.{n}" for n in range(k)))
        for i, k in enumerate(sizes)
    ]
    used = data.draw(st.integers(0, sum(sizes)))
    w = Watermarks(pre_allocate=pre, max_allocate=max_allocate, max_above_watermark=above)
    plan = plan_allocation(
        spec=azure.AzureSpec(instance_id="vm", instance_type="Standard_D2s_v3"),
        watermarks=w,
        limits=Limits(adapters=2, ipv4=azure.INTERFACE_ADDRESS_LIMIT),
        enis=nics,
        used=used,
        subnets=[Subnet(SUBNET, "v", "westeurope", "10.0.0.0/8", 10**6)],
        security_groups=(),
        create_interfaces=False,
    )
    assert plan.create == ()
    by_id = {n.id: n for n in nics}
    for a in plan.assign:
        assert 1 + len(by_id[a.eni_id].addresses) + a.count <= azure.INTERFACE_ADDRESS_LIMIT
    assert plan.total <= plan.needed + above
    if max_allocate:
        assert sum(sizes) + plan.total <= max(max_allocate, sum(sizes))
    if plan.total < plan.needed:
        assert "no new interfaces in azure IPAM" in plan.error
