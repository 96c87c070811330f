"""ENI IPAM against a real EC2-protocol server (moto, on 127.0.0.1, started here).

The operator's ENI allocator runs in-process on a real store; EC2 state is checked through
moto's API, not through our cache. moto does not enforce instance limits, so the limit test
asserts on what our code did (and what EC2 then holds), never on a moto error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pylium.adapters.ec2 import EC2API
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store, open_store
from pylium.agent.ipam import IPAM
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.model.resource import Resource
from pylium.operator.eni import ENIController, gc_tags
from pylium.testing.etcd import free_port
from pylium.testing.moto import MotoServer, moto_server

pytestmark = pytest.mark.moto

AZ = "us-east-1a"
_IMAGE = ""  # one of moto's built-in AMIs (listing them is slow: once per session)


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def ec2(moto: MotoServer) -> Any:
    moto.reset()
    return moto.client()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"local:{tmp_path / 'store.sqlite'}")
    yield opened
    opened.close()


class World:
    """A VPC, two subnets (one tagged), a security group and an m5.large in it."""

    def __init__(self, ec2: Any, instance_type: str = "m5.large") -> None:
        self.ec2 = ec2
        self.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(
            VpcId=self.vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=AZ
        )["Subnet"]["SubnetId"]
        self.pods_subnet = ec2.create_subnet(
            VpcId=self.vpc,
            CidrBlock="10.0.2.0/24",
            AvailabilityZone=AZ,
            TagSpecifications=[
                {"ResourceType": "subnet", "Tags": [{"Key": "tier", "Value": "pods"}]}
            ],
        )["Subnet"]["SubnetId"]
        self.sg = ec2.create_security_group(GroupName="nodes", Description="n", VpcId=self.vpc)[
            "GroupId"
        ]
        self.instance_type = instance_type
        self.instance = self.run_instance()

    def run_instance(self) -> str:
        global _IMAGE
        if not _IMAGE:
            _IMAGE = self.ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0][
                "ImageId"
            ]
        image = _IMAGE
        return str(
            self.ec2.run_instances(
                ImageId=image,
                MinCount=1,
                MaxCount=1,
                InstanceType=self.instance_type,
                SubnetId=self.subnet,
                SecurityGroupIds=[self.sg],
            )["Instances"][0]["InstanceId"]
        )

    def enis(self, instance: str | None = None) -> list[dict[str, Any]]:
        out = self.ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [instance or self.instance]}]
        )["NetworkInterfaces"]
        return sorted(out, key=lambda e: e["Attachment"]["DeviceIndex"])

    def secondary_ips(self, instance: str | None = None) -> list[str]:
        return [
            p["PrivateIpAddress"]
            for e in self.enis(instance)
            for p in e["PrivateIpAddresses"]
            if not p["Primary"]
        ]


def cilium_node(
    store: Store, name: str, world: World, instance: str | None = None, **ipam: int
) -> None:
    """What the agent's auto-create-cilium-node-resource writes in ENI mode."""
    ResourceClient(store).put(
        Resource(
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNode",
                "metadata": {"name": name},
                "spec": {
                    "instance-id": instance or world.instance,
                    "eni": {
                        "instance-type": world.instance_type,
                        "vpc-id": world.vpc,
                        "availability-zone": AZ,
                        "first-interface-index": 0,
                    },
                    "ipam": {k.replace("_", "-"): v for k, v in ipam.items()},
                },
            }
        )
    )


def node(store: Store, name: str = "n1") -> dict[str, Any]:
    found = ResourceClient(store).get("CiliumNode", name)
    assert found is not None
    return dict(found.body)


def pool(store: Store, name: str = "n1") -> dict[str, Any]:
    return dict(node(store, name)["spec"]["ipam"].get("pool") or {})


def set_used(store: Store, ips: list[str], name: str = "n1") -> None:
    def update(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        body.setdefault("status", {}).setdefault("ipam", {})["used"] = {
            ip: {"owner": f"default/pod-{i}"} for i, ip in enumerate(ips)
        }
        return body

    ResourceClient(store).mutate("CiliumNode", name, fn=update)


def settings(**extra: str) -> OperatorSettings:
    return OperatorSettings.from_configmap(
        {"ipam": IPAMMode.ENI.value, "cluster-name": "lab", **extra}
    )


def controller(store: Store, ec2: Any, **extra: str) -> ENIController:
    return ENIController(store, EC2API(ec2, qps=1000, burst=1000), settings(**extra))


CHANGES = (
    "assign_private_ip_addresses",
    "create_network_interface",
    "attach_network_interface",
    "unassign_private_ip_addresses",
)


def changes(api: EC2API) -> int:
    return sum(api.metrics.total_calls(op) for op in CHANGES)


def test_new_node_reaches_its_watermark(ec2: Any, store: Store) -> None:
    world = World(ec2)
    ctl = controller(store, ec2)
    ctl.refresh()  # the operator's start-up cache fill, before the node appears
    before = ctl.api.metrics.total_calls()
    cilium_node(store, "n1", world, pre_allocate=8)
    start = time.monotonic()
    report = ctl.reconcile()["n1"]
    elapsed = time.monotonic() - start
    calls = ctl.api.metrics.total_calls() - before
    assert report.allocated == 8 and not report.error
    got = pool(store)
    assert len(got) == 8 and sorted(got) == sorted(world.secondary_ips())
    eth0 = world.enis()[0]["NetworkInterfaceId"]
    assert {v["resource"] for v in got.values()} == {eth0}
    enis = node(store)["status"]["eni"]["enis"]
    assert enis[eth0]["number"] == 0 and len(enis[eth0]["addresses"]) == 8
    assert enis[eth0]["vpc"]["primary-cidr"] == "10.0.0.0/16"
    print(f"\nwatermark 8: {elapsed * 1000:.0f} ms, {calls} EC2 calls, {calls / 8:.2f} per IP")
    # At the watermark: another pass changes nothing in EC2.
    ctl.reconcile()
    assert changes(ctl.api) == 1


def test_pods_consume_ips_and_the_operator_tops_up_creating_an_eni(ec2: Any, store: Store) -> None:
    world = World(ec2)
    ctl = controller(store, ec2)
    cilium_node(store, "n1", world, pre_allocate=8)
    ctl.reconcile()
    first = sorted(pool(store))
    set_used(store, first)  # 8 pods: nothing free any more
    report = ctl.reconcile()["n1"]
    assert report.allocated == 8 and not report.error
    got = pool(store)
    assert len(got) == 16 and set(first) <= set(got)
    enis = world.enis()
    # eth0 holds at most 10 addresses (its primary + 9): the ninth pod IP goes there, the
    # rest onto a new ENI at device index 1, in the subnet with the most free addresses.
    assert len(enis) == 2 and len(enis[0]["PrivateIpAddresses"]) == 10
    assert enis[1]["Attachment"]["DeviceIndex"] == 1
    assert enis[1]["SubnetId"] == world.pods_subnet  # 10.0.2.0/24 has more free than eth0's
    # delete-on-termination (default true) is set after attaching; moto accepts the call but
    # does not record the flag, so the call itself is checked.
    assert ctl.api.metrics.calls[("modify_network_interface_attribute", "OK")] == 1
    tags = {t["Key"]: t["Value"] for t in enis[1]["TagSet"]}
    assert tags == {"io.cilium/cilium-managed": "true", "io.cilium/cluster-name": "lab"}
    assert [g["GroupId"] for g in enis[1]["Groups"]] == [world.sg]  # eth0's groups
    samples = {
        (m.name, tuple(sorted(s.labels.items()))): s.value
        for m in ctl.collector().collect()
        for s in m.samples
    }
    assert (
        samples[
            ("cilium_operator_ipam_interface_creation_ops", (("subnet_id", world.pods_subnet),))
        ]
        == 1
    )
    assert samples[("cilium_operator_ipam_allocation_ops", (("subnet_id", world.subnet),))] == 2
    assert samples[("cilium_operator_ipam_available_interfaces", ())] == 1
    assert {v["resource"] for ip, v in got.items() if ip not in first} == {
        enis[0]["NetworkInterfaceId"],
        enis[1]["NetworkInterfaceId"],
    }


def test_instance_limit_is_reported_and_never_exceeded(ec2: Any, store: Store) -> None:
    world = World(ec2)  # m5.large: 3 interfaces x 10 IPv4 addresses -> 27 pod IPs at most
    ctl = controller(store, ec2)
    cilium_node(store, "n1", world, pre_allocate=40)
    report = ctl.reconcile()["n1"]
    assert report.allocated == 27
    error = node(store)["status"]["ipam"]["operator-status"]["error"]
    assert "reached its limits" in error and "m5.large" in error and "13 of 40" in error
    for _ in range(3):
        ctl.reconcile()
    enis = world.enis()
    assert len(enis) == 3 and all(len(e["PrivateIpAddresses"]) <= 10 for e in enis)
    assert len(world.secondary_ips()) == 27 == len(pool(store))


def test_subnet_tags_and_first_interface_index(ec2: Any, store: Store) -> None:
    world = World(ec2)
    ctl = controller(store, ec2)
    cilium_node(store, "n1", world, pre_allocate=4)

    def tweak(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        body["spec"]["eni"].update({"first-interface-index": 1, "subnet-tags": {"tier": "pods"}})
        return body

    ResourceClient(store).mutate("CiliumNode", "n1", fn=tweak)
    ctl.reconcile()
    enis = world.enis()
    assert len(enis[0]["PrivateIpAddresses"]) == 1  # eth0 untouched
    assert enis[1]["SubnetId"] == world.pods_subnet and len(pool(store)) == 4


def test_excess_ips_are_released_through_the_handshake(ec2: Any, store: Store) -> None:
    world = World(ec2)
    ctl = controller(
        store, ec2, **{"aws-release-excess-ips": "true", "excess-ip-release-delay": "0"}
    )
    cilium_node(store, "n1", world, pre_allocate=8)
    ctl.reconcile()
    ips = sorted(pool(store))
    set_used(store, ips[:1])

    def lower(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        body["spec"]["ipam"]["pre-allocate"] = 2
        return body

    ResourceClient(store).mutate("CiliumNode", "n1", fn=lower)
    ctl.reconcile()  # marks the 5 IPs above used(1) + pre-allocate(2)
    marked = node(store)["status"]["ipam"]["release-ips"]
    assert len(marked) == 5 and set(marked.values()) == {"marked-for-release"}
    assert ips[0] not in marked
    assert len(world.secondary_ips()) == 8  # nothing released before the agent answers

    # The agent's answer: ready for all but one, which it refuses.
    refused = sorted(marked)[0]

    def answer(body: dict[str, Any] | None) -> dict[str, Any] | None:
        assert body is not None
        rel = body["status"]["ipam"]["release-ips"]
        for ip in rel:
            rel[ip] = "do-not-release" if ip == refused else "ready-for-release"
        return body

    ResourceClient(store).mutate("CiliumNode", "n1", fn=answer)
    report = ctl.reconcile()["n1"]
    assert len(report.released) == 4 and refused not in report.released
    left = world.secondary_ips()
    assert len(left) == 4 and not set(report.released) & set(left)
    assert set(pool(store)) == set(left)
    rel = node(store)["status"]["ipam"]["release-ips"]
    assert {ip for ip, st in rel.items() if st == "released"} == set(report.released)
    assert refused not in rel  # do-not-release entries are dropped


def test_orphaned_tagged_enis_are_garbage_collected(ec2: Any, store: Store) -> None:
    world = World(ec2)
    ctl = controller(store, ec2)
    tags = [{"Key": k, "Value": v} for k, v in gc_tags(ctl.settings)]

    def create(with_tags: list[dict[str, str]]) -> str:
        spec = [{"ResourceType": "network-interface", "Tags": with_tags}] if with_tags else []
        return str(
            ec2.create_network_interface(SubnetId=world.subnet, TagSpecifications=spec)[
                "NetworkInterface"
            ]["NetworkInterfaceId"]
        )

    orphan = create(tags)
    foreign = create([{"Key": "io.cilium/cluster-name", "Value": "other"}])
    untagged = create([])
    attached = create(tags)
    ec2.attach_network_interface(
        NetworkInterfaceId=attached, InstanceId=world.instance, DeviceIndex=1
    )
    assert ctl.gc() == []  # first sighting: only suspected
    assert ctl.gc() == [orphan]
    left = {e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces()["NetworkInterfaces"]}
    assert orphan not in left and {foreign, untagged, attached} <= left


class ThrottlingClient:
    """The real moto client, except that the first ``n`` calls of some operations answer
    RequestLimitExceeded as EC2 does when throttling (moto cannot be told to)."""

    def __init__(self, client: Any, fail: dict[str, int]) -> None:
        self._client = client
        self.fail = dict(fail)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if self.fail.get(name, 0) <= 0:
            return method

        def throttled(**_: Any) -> Any:
            self.fail[name] -= 1
            raise ClientError(
                {"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}},
                name,
            )

        return throttled


def test_throttling_is_retried_with_backoff(ec2: Any, store: Store) -> None:
    world = World(ec2)
    client = ThrottlingClient(
        ec2,
        {
            "assign_private_ip_addresses": 2,
            "create_network_interface": 1,
            "describe_network_interfaces": 1,
        },
    )
    api = EC2API(client, qps=1000, burst=1000, backoff=0.01)
    ctl = ENIController(store, api, settings())
    cilium_node(store, "n1", world, pre_allocate=12)
    report = ctl.reconcile()["n1"]
    assert report.allocated == 12 and not report.error
    assert len(world.secondary_ips()) == 12
    assert api.metrics.throttled == {
        "describe_network_interfaces": 1,
        "assign_private_ip_addresses": 2,
        "create_network_interface": 1,
    }
    samples = api.metrics.as_prometheus()
    key = (
        "cilium_operator_ec2_api_duration_seconds_count"
        '{operation="assign_private_ip_addresses",response_code="RequestLimitExceeded"}'
    )
    assert samples[key] == 2


def test_operator_restart_resumes_from_ec2_without_double_allocation(
    ec2: Any, store: Store
) -> None:
    world = World(ec2)
    second = world.run_instance()
    ctl = controller(store, ec2)
    cilium_node(store, "n1", world, pre_allocate=12)
    cilium_node(store, "n2", world, instance=second, pre_allocate=5)
    ctl.reconcile()
    before = {n: pool(store, n) for n in ("n1", "n2")}
    in_ec2 = sorted(world.secondary_ips()) + sorted(world.secondary_ips(second))

    restarted = controller(store, ec2)  # a new process: nothing in memory
    restarted.reconcile()
    restarted.reconcile()
    assert changes(restarted.api) == 0
    assert {n: pool(store, n) for n in ("n1", "n2")} == before
    assert sorted(world.secondary_ips()) + sorted(world.secondary_ips(second)) == in_ec2
    assert len(before["n1"]) == 12 and len(before["n2"]) == 5
    assert not set(before["n1"]) & set(before["n2"])


# -- the agent's side ---------------------------------------------------------------------------


class OperatorLoop:
    """The ENI controller reconciling in a thread, as the operator's loop does (there it is
    woken by CiliumNode changes; here it simply polls)."""

    def __init__(self, ctl: ENIController, period: float = 0.05) -> None:
        self.ctl = ctl
        self.period = period
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.ctl.reconcile()
            except BaseException as err:
                self.errors.append(err)
                return
            self.stop.wait(self.period)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.errors, self.errors


def wait_for(predicate: Callable[[], bool], timeout: float = 120.0) -> float:
    """Generous: the 2-core VM is shared with other test runs."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not reached"
        time.sleep(0.02)
    return time.monotonic() - start


def test_agent_gets_pod_ips_from_enis_and_the_pool_follows(ec2: Any, store: Store) -> None:
    world = World(ec2)
    metadata = {
        "instance-id": world.instance,
        "instance-type": world.instance_type,
        "vpc-id": world.vpc,
        "availability-zone": AZ,
    }
    ctl = controller(
        store, ec2, **{"aws-release-excess-ips": "true", "excess-ip-release-delay": "0"}
    )
    ctl.refresh()
    loop = OperatorLoop(ctl)
    try:
        ipam = IPAM(store, "n1", IPAMMode.ENI, pre_allocate=4, eni=metadata)
        stop = threading.Event()
        start = time.monotonic()
        assert ipam.wait_for_cidrs(stop, period=0.02)
        wait_for(lambda: len(pool(store)) >= 4)
        watermark = time.monotonic() - start
        spec = node(store)["spec"]
        assert spec["instance-id"] == world.instance and spec["eni"]["vpc-id"] == world.vpc
        assert spec["ipam"]["pre-allocate"] == 4
        # The router IP (cilium_host) is the first pool address, as upstream in ENI mode.
        assert str(ipam.router_ip) in pool(store)

        def free() -> int:
            status = node(store).get("status", {}).get("ipam", {})
            return len(pool(store)) - len(status.get("used") or {})

        pods = []
        for i in range(12):
            # The watermark keeps addresses ready; a loaded machine may lag behind, and an
            # allocation only waits 10 s for the operator: pods are "scheduled" when one is free.
            wait_for(lambda: free() >= 1)
            pods.append(ipam.allocate(f"default/pod-{i}"))
        assert len(set(pods)) == 12 and {str(p) for p in pods} <= set(world.secondary_ips())
        used = node(store)["status"]["ipam"]["used"]
        eni_of = {ip: v["resource"] for ip, v in pool(store).items()}
        assert all(used[str(p)]["resource"] == eni_of[str(p)] for p in pods)
        wait_for(lambda: len(pool(store)) - len(node(store)["status"]["ipam"]["used"]) >= 4)
        assert len(world.enis()) == 2  # eth0 (9 pod IPs) ran full: a second ENI

        # Pods go away: the excess goes back to EC2 through the handshake, never a used IP.
        for p in pods[:10]:
            ipam.release(p)

        def settled() -> bool:
            ipam.sync_cidrs()
            return (
                len(world.secondary_ips()) <= 3 + 4
                and "release-ips" not in (node(store)["status"]["ipam"])
            )

        wait_for(settled)
        left = set(world.secondary_ips())
        assert {str(p) for p in pods[10:]} <= left and str(ipam.router_ip) in left
        assert {str(c.network_address) for c in ipam.allocator.cidrs} == left
        print(f"\nagent: pool at watermark 4 after {watermark * 1000:.0f} ms")
    finally:
        loop.close()


def test_wrong_instance_id_is_reported(ec2: Any, store: Store) -> None:
    world = World(ec2)
    cilium_node(store, "n1", world, instance="i-0123456789abcdef0")
    ctl = controller(store, ec2)
    report = ctl.reconcile()["n1"]
    assert report.allocated == 0
    calls = ctl.api.metrics.total_calls()
    ctl.reconcile()
    assert ctl.api.metrics.total_calls() == calls  # not looked up again on every pass
    assert (
        "i-0123456789abcdef0 not found in EC2"
        in (node(store)["status"]["ipam"]["operator-status"]["error"])
    )
    assert len(ec2.describe_network_interfaces()["NetworkInterfaces"]) == 1  # eth0 only


def test_custom_cni_config_steers_the_enis(ec2: Any, store: Store, tmp_path: Path) -> None:
    world = World(ec2)
    conf = tmp_path / "05-cilium.conflist"
    conf.write_text(
        json.dumps(
            {
                "cniVersion": "0.3.1",
                "name": "cilium",
                "plugins": [
                    {
                        "type": "cilium-cni",
                        "eni": {"first-interface-index": 1, "subnet-tags": {"tier": "pods"}},
                        "ipam": {"pre-allocate": 5},
                    }
                ],
            }
        )
    )
    metadata = {
        "instance-id": world.instance,
        "instance-type": world.instance_type,
        "vpc-id": world.vpc,
        "availability-zone": AZ,
    }
    ipam = IPAM(store, "n1", IPAMMode.ENI, pre_allocate=8, eni=metadata, cni_conf=str(conf))
    ipam.ensure_cilium_node()
    spec = node(store)["spec"]
    assert spec["eni"]["first-interface-index"] == 1 and spec["ipam"]["pre-allocate"] == 5
    controller(store, ec2).reconcile()
    enis = world.enis()
    assert len(enis[0]["PrivateIpAddresses"]) == 1  # eth0 skipped
    assert enis[1]["SubnetId"] == world.pods_subnet and len(pool(store)) == 5


# -- the operator process -------------------------------------------------------------------------


def start_operator(
    moto: MotoServer, store_url: str, config: Path, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "pylium-operator"),
                "--store",
                store_url,
                "--config",
                str(config),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **moto.env()},
        )


def test_operator_process_allocates_and_resumes_after_kill(
    moto: MotoServer, ec2: Any, tmp_path: Path
) -> None:
    world = World(ec2)
    url = f"local:{tmp_path / 'store.sqlite'}"
    store = open_store(url)
    config = tmp_path / "cilium-config.json"
    metrics_port = free_port()
    config.write_text(
        json.dumps(
            {
                "ipam": "eni",
                "cluster-name": "lab",
                "ec2-api-endpoint": moto.url,
                "operator-prometheus-serve-addr": f"127.0.0.1:{metrics_port}",
            }
        )
    )
    log = tmp_path / "operator.log"
    proc = start_operator(moto, url, config, log)
    try:
        cilium_node(store, "n1", world, pre_allocate=12)
        wait_for(lambda: len(pool(store)) == 12, timeout=120)
        before = pool(store)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # While it is down, pods take 6 of the IPs; the restarted operator resumes from
        # EC2's state: it tops up by exactly 6, leaving the 12 it had untouched.
        set_used(store, sorted(before)[:6])
        proc = start_operator(moto, url, config, log)
        wait_for(lambda: len(pool(store)) == 18, timeout=120)
        time.sleep(1.0)
        after = pool(store)
        assert len(after) == 18 and set(before) <= set(after)
        assert sorted(after) == sorted(world.secondary_ips())
        assert len(set(world.secondary_ips())) == 18
        # The restarted operator's metrics: the 6 IPs went onto the second ENI (eth0 was
        # full) in one AssignPrivateIpAddresses.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            text = resp.read().decode()
        assert 'cilium_operator_ipam_allocation_ops_total{subnet_id="subnet-' in text
        assert "cilium_operator_ipam_interface_creation_ops_total{" not in text
        assert (
            "cilium_operator_ec2_api_duration_seconds_count"
            '{operation="describe_network_interfaces",response_code="OK"}'
        ) in text
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        store.close()
        print(log.read_text()[-3000:])
