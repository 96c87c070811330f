"""Azure and AlibabaCloud IPAM through the operator's shared cloud controller, against
protocol-level test servers on 127.0.0.1 (:mod:`pylium.testing.azure`,
:mod:`pylium.testing.alibabacloud`: independent HTTP servers speaking ARM's REST shapes and
Alibaba's signed RPC, started here). The controller runs in-process on a real store, over
the real adapters (``requests``, signing, token bucket, retries); the cloud's state is checked
through the servers' state, not through our cache. Neither server enforces instance limits,
so the limit tests assert on what our code did.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.alibabacloud import AlibabaCloudAPI
from pylium.adapters.azure import ARMClient
from pylium.adapters.procs import free_port
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store, open_store
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.model.resource import Resource
from pylium.operator.alibabacloud_ipam import AlibabaIPAMController
from pylium.operator.azure_ipam import AzureIPAMController
from pylium.testing.alibabacloud import AlibabaCloudServer, alibabacloud_server
from pylium.testing.azure import AzureARMServer, azure_server

ZONE = "cn-hangzhou-h"
VPC = "vpc-pylium"
IDENTITY = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"local:{tmp_path / 'store.sqlite'}")
    yield opened
    opened.close()


def put_node(store: Store, name: str, spec: dict[str, Any]) -> None:
    ResourceClient(store).put(
        Resource(
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNode",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    )


def node(store: Store, name: str = "n1") -> dict[str, Any]:
    found = ResourceClient(store).get("CiliumNode", name)
    assert found is not None
    return dict(found.body)


def pool(store: Store, name: str = "n1") -> dict[str, Any]:
    return dict(node(store, name)["spec"]["ipam"].get("pool") or {})


def mutate_ipam(store: Store, name: str, **fields: Any) -> None:
    def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        for key, value in fields.items():
            if key == "used":
                body.setdefault("status", {}).setdefault("ipam", {})["used"] = {
                    ip: {"owner": f"default/pod-{i}"} for i, ip in enumerate(value)
                }
            else:
                body["spec"]["ipam"][key.replace("_", "-")] = value
        return body

    ResourceClient(store).mutate("CiliumNode", name, fn=update)


def op_error(store: Store, name: str = "n1") -> str:
    return str(node(store, name)["status"]["ipam"].get("operator-status", {}).get("error", ""))


# -- AlibabaCloud ---------------------------------------------------------------------------------


class AliWorld:
    """A VPC with two vSwitches (a small tagged one), a security group and an ecs.g6.large (3 ENIs
    of 6 private IPs each, DescribeInstanceTypes says)."""

    def __init__(self, server: AlibabaCloudServer) -> None:
        self.server = server
        self.vsw = server.add_vswitch(VPC, ZONE, "10.1.1.0/24")
        self.pods_vsw = server.add_vswitch(VPC, ZONE, "10.1.2.0/26", tier="pods")
        server.add_vswitch("vpc-other", ZONE, "10.9.0.0/16")
        self.sg = server.add_security_group(VPC)
        server.add_instance_type("ecs.g6.large", enis=3, ips=6)
        self.instance = server.run_instance("ecs.g6.large", self.vsw, self.sg)

    def secondary_ips(self, instance: str = "") -> list[str]:
        return [ip for e in self.server.enis_of(instance or self.instance) for ip in e.secondary]

    def node(self, store: Store, name: str = "n1", instance: str = "", **ipam: Any) -> None:
        put_node(
            store,
            name,
            {
                "instance-id": instance or self.instance,
                "alibaba-cloud": {
                    "instance-type": "ecs.g6.large",
                    "vpc-id": VPC,
                    "availability-zone": ZONE,
                    "security-groups": [self.sg],
                    **ipam.pop("alibaba", {}),
                },
                "ipam": {k.replace("_", "-"): v for k, v in ipam.items()},
            },
        )


@pytest.fixture
def ali() -> Iterator[AliWorld]:
    with alibabacloud_server() as server:
        yield AliWorld(server)


def ali_controller(
    server: AlibabaCloudServer, store: Store, secret: str = "", **extra: str
) -> AlibabaIPAMController:
    settings = OperatorSettings.from_configmap(
        {
            "ipam": IPAMMode.ALIBABACLOUD.value,
            "cluster-name": "lab",
            "alibaba-cloud-vpc-id": VPC,
            **extra,
        }
    )
    api = AlibabaCloudAPI(
        region="cn-hangzhou",
        access_key_id=server.key_id,
        access_key_secret=secret or server.secret,
        vpc_id=VPC,
        ecs_endpoint=server.url,
        vpc_endpoint=server.url,
        qps=1000,
        burst=1000,
        sleep=lambda _s: None,
        poll_interval=0,
    )
    return AlibabaIPAMController(store, api, settings)


ALI_CHANGES = (
    "AssignPrivateIpAddresses",
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "UnassignPrivateIpAddresses",
)


def ali_changes(server: AlibabaCloudServer) -> int:
    return sum(server.calls(a) for a in ALI_CHANGES)


def test_alibaba_new_node_reaches_its_watermark_with_a_new_eni(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(ali.server, store)
    ali.node(store)
    report = ctl.reconcile()["n1"]
    assert report.error == "" and report.allocated == 8
    # 5 on the primary ENI (6 addresses, its primary included), then a new ENI with 3.
    enis = ali.server.enis_of(ali.instance)
    assert [len(e.secondary) for e in sorted(enis, key=lambda e: e.type)] == [5, 3]
    new = next(e for e in enis if e.type == "Secondary")
    assert new.status == "InUse" and new.groups == [ali.sg]
    assert new.tags == {
        "cilium-eni-index": "1",
        "io.cilium/cilium-managed": "true",
        "io.cilium/cluster-name": "lab",
    }
    # The untagged vSwitch of the node's VPC and zone with the most free addresses.
    assert new.vswitch == ali.vsw
    assert sorted(pool(store)) == sorted(ali.secondary_ips())
    assert {v["resource"] for v in pool(store).values()} == {e.id for e in enis}
    status = node(store)["status"]["alibaba-cloud"]["enis"]
    assert status[new.id]["vswitch"]["vswitch-id"] == ali.vsw
    assert len(status[new.id]["private-ipsets"]) == 4
    assert ali.server.calls("AssignPrivateIpAddresses") == 1
    assert ali.server.calls("CreateNetworkInterface") == 1
    # A second pass has nothing to do.
    before = ali_changes(ali.server)
    ctl.reconcile()
    assert ali_changes(ali.server) == before


def test_alibaba_pods_consume_ips_and_the_operator_tops_up(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(ali.server, store)
    ali.node(store, pre_allocate=4)
    ctl.reconcile()
    assert len(ali.secondary_ips()) == 4
    mutate_ipam(store, "n1", used=sorted(pool(store))[:3])
    report = ctl.reconcile()["n1"]
    assert report.allocated == 3  # 1 free left, 4 wanted free
    assert len(ali.secondary_ips()) == 7
    assert len(pool(store)) == 7


def test_alibaba_vswitch_tags_choose_where_new_enis_go(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(ali.server, store)
    ali.node(store, pre_allocate=7, alibaba={"vswitch-tags": {"tier": "pods"}})
    assert ctl.reconcile()["n1"].error == ""
    new = next(e for e in ali.server.enis_of(ali.instance) if e.type == "Secondary")
    assert new.vswitch == ali.pods_vsw
    ali.node(store, "n2", instance="i-missing", alibaba={"vswitches": ["vsw-nope"]})
    ctl.reconcile()
    assert "instance i-missing not found in AlibabaCloud" in op_error(store, "n2")


def test_alibaba_instance_limit_is_reported_and_never_exceeded(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(ali.server, store)
    ali.node(store, pre_allocate=20)
    report = ctl.reconcile()["n1"]
    assert report.allocated == 15  # 3 ENIs x (6 - 1)
    assert "reached its limits: 3 interfaces of 6 IPv4 addresses each" in report.error
    assert op_error(store) == report.error
    for _ in range(2):
        ctl.reconcile()
    enis = ali.server.enis_of(ali.instance)
    assert len(enis) == 3 and all(len(e.secondary) <= 5 for e in enis)
    assert ali.server.calls("DescribeInstanceTypes") == 1  # limits asked once


def test_alibaba_excess_ips_are_released(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(
        ali.server,
        store,
        **{"alibaba-cloud-release-excess-ips": "true", "excess-ip-release-delay": "0"},
    )
    ali.node(store, pre_allocate=5)
    ctl.reconcile()
    ips = sorted(pool(store))
    mutate_ipam(store, "n1", used=ips[:1], pre_allocate=2)
    ctl.reconcile()
    marked = node(store)["status"]["ipam"]["release-ips"]
    assert len(marked) == 2 and ips[0] not in marked

    def ready(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        for ip in body["status"]["ipam"]["release-ips"]:
            body["status"]["ipam"]["release-ips"][ip] = "ready-for-release"
        return body

    ResourceClient(store).mutate("CiliumNode", "n1", fn=ready)
    report = ctl.reconcile()["n1"]
    assert sorted(report.released) == sorted(marked)
    left = ali.secondary_ips()
    assert len(left) == 3 and not set(report.released) & set(left)
    assert set(pool(store)) == set(left)
    assert ali.server.calls("UnassignPrivateIpAddresses") == 1


def test_alibaba_throttling_is_retried(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(ali.server, store)
    ali.node(store)
    ali.server.throttle(3)
    report = ctl.reconcile()["n1"]
    assert report.error == "" and report.allocated == 8
    assert sum(ctl.api.metrics.throttled.values()) == 3
    samples = ctl.api.metrics.as_prometheus()
    assert any(k.startswith("cilium_operator_alibaba_cloud_api_throttled_total") for k in samples)


def test_alibaba_restart_resumes_without_double_allocation(ali: AliWorld, store: Store) -> None:
    ali.node(store)
    ali_controller(ali.server, store).reconcile()
    before = ali_changes(ali.server)
    assert len(ali.secondary_ips()) == 8
    report = ali_controller(ali.server, store).reconcile()["n1"]  # a new operator process
    assert report.allocated == 0 and report.error == ""
    assert ali_changes(ali.server) == before
    assert sorted(pool(store)) == sorted(ali.secondary_ips())


def test_alibaba_bad_signature_is_rejected_by_the_server(ali: AliWorld, store: Store) -> None:
    ctl = ali_controller(ali.server, store, secret="not-the-secret")
    ali.node(store)
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        ctl.reconcile()
    assert ali.server.calls() == 0


# -- Azure ----------------------------------------------------------------------------------------


class AzureWorld:
    """A VNet with a /22 subnet, a standalone Standard_D2s_v3 VM (1 NIC, 2 allowed by its
    SKU) and a two-instance scale set of Standard_D4s_v3."""

    def __init__(self, server: AzureARMServer) -> None:
        self.server = server
        subnets = server.add_vnet("pylium-vnet", {"nodes": "10.2.0.0/22"})
        self.subnet = subnets["nodes"]
        server.add_sku("Standard_D2s_v3", 2)
        server.add_sku("Standard_D4s_v3", 2)
        server.add_sku("Standard_D8s_v3", 4)
        self.vm = server.add_vm("vm1", "Standard_D2s_v3", self.subnet)
        self.vmss = server.add_scale_set("pool1", "Standard_D4s_v3", self.subnet, 2)

    def nic_ips(self, vm: str) -> list[str]:
        return [
            c.ip
            for n in self.server.nics.values()
            if n.vm.lower() == vm.lower()
            for c in n.configs
            if not c.primary
        ]


@pytest.fixture
def az() -> Iterator[AzureWorld]:
    with azure_server(identity=IDENTITY) as server:
        yield AzureWorld(server)


def az_controller(
    server: AzureARMServer, store: Store, identity: str = IDENTITY
) -> AzureIPAMController:
    settings = OperatorSettings.from_configmap(
        {
            "ipam": IPAMMode.AZURE.value,
            "azure-subscription-id": server.subscription,
            "azure-resource-group": server.group,
            "azure-user-assigned-identity-id": identity,
        }
    )
    api = ARMClient(
        subscription_id=settings.azure_subscription_id,
        resource_group=settings.azure_resource_group,
        user_assigned_identity_id=settings.azure_user_assigned_identity_id,
        endpoint=server.url,
        imds_endpoint=server.url,
        qps=1000,
        burst=1000,
        sleep=lambda _s: None,
    )
    return AzureIPAMController(store, api, settings)


def az_node(store: Store, name: str, vm: str, **ipam: Any) -> None:
    azure = ipam.pop("azure", {})
    put_node(
        store,
        name,
        {
            "instance-id": vm,
            "azure": azure,
            "ipam": {k.replace("_", "-"): v for k, v in ipam.items()},
        },
    )


def test_azure_vm_nic_gets_ip_configurations_up_to_the_watermark(
    az: AzureWorld, store: Store
) -> None:
    ctl = az_controller(az.server, store)
    az_node(store, "n1", az.vm.lower())  # ARM IDs compare case-insensitively
    report = ctl.reconcile()["n1"]
    assert report.error == "" and report.allocated == 8
    nic = az.server.nic(
        az.server.group_path + "/providers/Microsoft.Network/networkInterfaces/vm1-nic0"
    )
    names = [c.name for c in nic.configs if not c.primary]
    assert len(names) == 8 and all(n.startswith("Cilium-") and len(n) == 15 for n in names)
    assert sorted(pool(store)) == sorted(az.nic_ips(az.vm))
    assert {v["resource"] for v in pool(store).values()} == {nic.id}
    # One GET + one PUT of the NIC (and its async operation) for all 8 addresses.
    assert az.server.count("PUT", "/networkInterfaces/vm1-nic0") == 1
    assert az.server.count("GET", "/operations/") == 2
    status = node(store)["status"]["azure"]["interfaces"]
    assert status[0]["name"] == "vm1-nic0" and len(status[0]["addresses"]) == 8
    assert status[0]["cidr"] == "10.2.0.0/22"
    assert ctl.azure.limits["Standard_D2s_v3"].adapters == 2
    before = az.server.count("PUT")
    ctl.reconcile()
    assert az.server.count("PUT") == before


def test_azure_scale_set_instance_gets_addresses_through_its_vm_profile(
    az: AzureWorld, store: Store
) -> None:
    ctl = az_controller(az.server, store)
    az_node(store, "n1", az.vmss[1], pre_allocate=3)
    report = ctl.reconcile()["n1"]
    assert report.error == "" and report.allocated == 3
    assert az.server.count("PUT", "/virtualMachineScaleSets/pool1/virtualMachines/1") == 1
    assert len(az.nic_ips(az.vmss[1])) == 3 and az.nic_ips(az.vmss[0]) == []
    profile = az.server.scale_sets["pool1"][1]["1"][0]["properties"]["ipConfigurations"]
    assert len(profile) == 4 and profile[0]["name"] == "ipconfig1"
    assert sorted(pool(store)) == sorted(az.nic_ips(az.vmss[1]))
    mutate_ipam(store, "n1", used=sorted(pool(store)))
    assert ctl.reconcile()["n1"].allocated == 3
    assert len(az.nic_ips(az.vmss[1])) == 6


def test_azure_nic_limit_is_reported_and_never_exceeded(az: AzureWorld, store: Store) -> None:
    ctl = az_controller(az.server, store)
    az_node(store, "n1", az.vm, pre_allocate=300)
    report = ctl.reconcile()["n1"]
    assert report.allocated == 255  # 256 IP configurations per NIC, the primary included
    assert "no new interfaces in azure IPAM" in report.error
    assert "45 of 300 IPs could not be allocated" in report.error
    ctl.reconcile()
    assert len(az.nic_ips(az.vm)) == 255


def test_azure_throttling_and_paging(az: AzureWorld, store: Store) -> None:
    for i in range(3):  # more VMs than one page of the list
        az.server.add_vm(f"extra{i}", "Standard_D8s_v3", az.subnet)
    ctl = az_controller(az.server, store)
    az_node(store, "n1", az.vm)
    az.server.throttle(2)
    report = ctl.reconcile()["n1"]
    assert report.error == "" and report.allocated == 8
    assert sum(ctl.api.metrics.throttled.values()) == 2
    assert az.server.count("GET", "/virtualMachines") >= 3  # nextLink followed


def test_azure_wrong_identity_fails_clearly(az: AzureWorld, store: Store) -> None:
    ctl = az_controller(az.server, store, identity="not-registered")
    az_node(store, "n1", az.vm)
    with pytest.raises(Exception, match="Azure token: 400"):
        ctl.reconcile()
    assert az.server.count("GET") == 0


def test_azure_restart_resumes_without_double_allocation(az: AzureWorld, store: Store) -> None:
    az_node(store, "n1", az.vm)
    az_controller(az.server, store).reconcile()
    before = az.server.count("PUT")
    report = az_controller(az.server, store).reconcile()["n1"]
    assert report.allocated == 0 and az.server.count("PUT") == before
    assert len(pool(store)) == 8


# -- the operator process -------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    """Generous: the 2-core VM is shared with other test runs."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not reached"
        time.sleep(0.05)


@contextmanager
def run_operator(
    tmp_path: Path, config: dict[str, str], env: dict[str, str]
) -> Iterator[tuple[Store, int]]:
    """``pylium-operator`` with ``config`` and ``env``; yields its store and metrics port."""
    url = f"local:{tmp_path / 'store.sqlite'}"
    store = open_store(url)
    port = free_port()
    path = tmp_path / "cilium-config.json"
    path.write_text(json.dumps({**config, "operator-prometheus-serve-addr": f"127.0.0.1:{port}"}))
    log = tmp_path / "operator.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "pylium-operator"),
                "--store",
                url,
                "--config",
                str(path),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        yield store, port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        store.close()
        print(log.read_text()[-3000:])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as resp:
        return str(resp.read().decode())


def test_operator_process_in_alibabacloud_mode(ali: AliWorld, tmp_path: Path) -> None:
    env = {
        "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": ali.server.key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ali.server.secret,
        "PYLIUM_ALIBABA_CLOUD_ECS_ENDPOINT": ali.server.url,
        "PYLIUM_ALIBABA_CLOUD_VPC_ENDPOINT": ali.server.url,
    }
    config = {"ipam": "alibabacloud", "cluster-name": "lab", "alibaba-cloud-vpc-id": VPC}
    with run_operator(tmp_path, config, env) as (store, port):
        ali.node(store, pre_allocate=12)
        wait_for(lambda: len(pool(store)) == 12)
        assert sorted(pool(store)) == sorted(ali.secondary_ips())
        assert len(ali.server.enis_of(ali.instance)) == 3  # 5 + 5 + 2
        text = scrape(port)
        assert "cilium_operator_alibaba_cloud_api_duration_seconds_count" in text
        assert 'cilium_operator_ipam_interface_creation_ops_total{subnet_id="vsw-' in text


def test_operator_process_in_azure_mode(az: AzureWorld, tmp_path: Path) -> None:
    env = {
        "PYLIUM_AZURE_ARM_ENDPOINT": az.server.url,
        "PYLIUM_AZURE_IMDS_ENDPOINT": az.server.url,
    }
    config = {
        "ipam": "azure",
        "azure-subscription-id": az.server.subscription,
        "azure-resource-group": az.server.group,
        "azure-user-assigned-identity-id": IDENTITY,
    }
    with run_operator(tmp_path, config, env) as (store, port):
        az_node(store, "n1", az.vm, pre_allocate=6)
        wait_for(lambda: len(pool(store)) == 6)
        assert sorted(pool(store)) == sorted(az.nic_ips(az.vm))
        sample = (
            'cilium_operator_azure_api_duration_seconds_count{operation="Interfaces.CreateOrUpdate"'
        )
        assert sample in scrape(port)
