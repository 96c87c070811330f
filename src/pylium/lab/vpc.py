"""L6: the lab's AWS stand-in for ``ipam: eni``: a real EC2-protocol server (moto) and a VPC
made of the lab's namespaces.

- EC2 is moto in server mode on a free 127.0.0.1 port of the root namespace, started through
  :data:`MOTO_LAUNCHER` (which fixes moto's address picks: unique in the VPC and never one of
  the five addresses AWS reserves per subnet). The operator, the only EC2 client as upstream,
  runs in the root namespace too (with dummy credentials and ``ec2-api-endpoint``) and serves
  its metrics on a free loopback port there.
- The VPC's primary CIDR is the lab's underlay /24, one subnet ``nodes`` over all of it; a
  secondary CIDR ``100.64.<k>.0/24`` (as EKS custom networking uses) holds the subnet ``pods``,
  tagged ``pylium-lab/subnet=pods``. Each node is an ``m5.large`` instance in ``nodes`` whose
  primary ENI is the node's ``eth0`` (its address, and moto's MAC given to the device). The
  agents get their instance's metadata as ``$PYLIUM_ENI_METADATA`` (there is no IMDS) with
  ``first-interface-index: 1`` and ``subnet-tags`` naming ``pods``: pod IPs come from ENIs
  the operator creates and attaches.
- The fabric namespace is the VPC router: it holds every subnet's router address (network
  + 1) on its bridge, forwards without redirects, and knows, as the VPC does, which ENI holds
  which address (a permanent neighbour entry per address, with the ENI's MAC). Nodes' default
  route points at it.
- ``python -m pylium.lab.vpc sync --lab-dir DIR`` (a lab process) plays EC2's hypervisor: every
  ENI attached to a node's instance at device index k >= 1 appears in the node as ``eth<k>``
  with the ENI's MAC and primary address (a /32: the main table stays eth0's), the other end
  ``<node>e<k>`` on the fabric bridge; a detached ENI's device goes away; the router's neighbour
  entries follow the addresses EC2 says each ENI holds.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pylium.adapters import procs
from pylium.adapters.netlink import netns as nl
from pylium.base.errors import LabError, PyliumError

log = logging.getLogger(__name__)

# moto 5.2.5 picks secondary IPs at random in the subnet and only avoids the addresses of the
# same ENI, so two ENIs can end up holding one address (real EC2 never does that), and it may
# pick one of the addresses AWS reserves in every subnet (network, router, DNS, future use,
# broadcast). The server is started through this launcher, which makes the pick avoid both.
MOTO_LAUNCHER = """
import collections
import ipaddress
import sys
from moto.ec2.models import elastic_network_interfaces as enis
from moto.ec2.models import ec2_backends
from moto.server import main

_pick = enis.random_private_ip
_recent = collections.deque(maxlen=64)  # picked for an ENI being built, not yet on it

def _held():
    out = set()
    for regions in ec2_backends.values():
        for backend in regions.values():
            for eni in backend.enis.values():
                out.update(p["PrivateIpAddress"] for p in eni.private_ip_addresses
                           if isinstance(p, dict))
                out.add(eni.private_ip_address)
    return out

def _reserved(ip, cidr):
    net = ipaddress.ip_network(cidr, strict=False)
    offset = int(ipaddress.ip_address(ip)) - int(net.network_address)
    return offset < 4 or ipaddress.ip_address(ip) == net.broadcast_address

def _unique(cidr=None, ipv6=False):
    if ipv6:
        return _pick(cidr, ipv6=True)
    held = _held() | set(_recent)
    for _ in range(10000):
        ip = _pick(cidr)
        if ip not in held and not (cidr and _reserved(ip, cidr)):
            _recent.append(ip)
            return ip
    raise RuntimeError("subnet " + str(cidr) + " has no free address")

enis.random_private_ip = _unique
main(sys.argv[1:])
"""
REGION = "us-east-1"
AVAILABILITY_ZONE = "us-east-1a"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
INSTANCE_TYPE = "m5.large"
"""3 interfaces of 10 IPv4 addresses each: up to 18 pod IPs per node on ENIs 1 and 2."""
PODS_SUBNET_TAG = ("pylium-lab/subnet", "pods")
START_TIMEOUT = 120.0
SYNC_PERIOD = 0.25
VPC_FILE = "vpc.json"
ENI_DEVICE = re.compile(r"^eth([1-9][0-9]*)$")


def pods_cidr(underlay: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The pods subnet of a lab: 100.64.<third octet of its underlay>.0/24."""
    return ipaddress.IPv4Network(f"100.64.{underlay.network_address.packed[2]}.0/24")


def enabled(config: Mapping[str, str]) -> bool:
    """Whether the lab's configuration asks for ENI IPAM (then the lab models a VPC)."""
    return config.get("ipam") == "eni"


@dataclass
class LabVPC:
    """What the lab made in EC2 (``vpc.json`` in the lab directory)."""

    endpoint: str
    vpc_id: str
    subnets: dict[str, str]
    """``nodes`` / ``pods`` -> subnet ID."""
    pods_cidr: str
    fabric_netns: str
    bridge: str
    mtu: int
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    """node -> ``instance-id``, ``netns``, ``mac`` (of eth0)."""

    @classmethod
    def load(cls, lab_dir: Path) -> LabVPC | None:
        try:
            return cls(**json.loads((lab_dir / VPC_FILE).read_text()))
        except FileNotFoundError:
            return None

    def save(self, lab_dir: Path) -> None:
        tmp = lab_dir / (VPC_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(lab_dir / VPC_FILE)


def ec2_client(endpoint: str) -> Any:
    """A boto3 EC2 client for the lab's moto (dummy credentials, no retries)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def aws_env() -> dict[str, str]:
    """The environment of a process that talks to the lab's EC2."""
    return {**os.environ, **CREDENTIALS, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}


def _start_moto(lab_dir: Path, record: Callable[[str, int], None]) -> str:
    try:
        import moto  # noqa: F401  (only whether it is installed)
    except ImportError as err:
        raise LabError(
            "ipam eni: the lab's EC2 is moto's server, which is not installed "
            "(pip install 'moto[server]', a dev dependency of pylium)"
        ) from err
    port = procs.free_port()
    pid = procs.spawn(
        [sys.executable, "-c", MOTO_LAUNCHER, "-H", "127.0.0.1", "-p", str(port)],
        log_path=lab_dir / "ec2.log",
        env=aws_env(),
    )
    record("ec2", pid)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as resp:
                if resp.status == 200:
                    return url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if not procs.alive(pid) or time.monotonic() > deadline:
            raise LabError(f"the lab's EC2 (moto) did not start; see {lab_dir / 'ec2.log'}")
        time.sleep(0.2)


def _image(ec2: Any) -> str:
    images = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"]
    return str(images[0]["ImageId"])


def build(
    *,
    lab: str,
    lab_dir: Path,
    underlay: ipaddress.IPv4Network,
    gateway: ipaddress.IPv4Address,
    fabric_netns: str,
    bridge: str,
    mtu: int,
    nodes: Mapping[str, tuple[str, ipaddress.IPv4Interface]],
    config: Mapping[str, str],
    record: Callable[[str, int], None],
) -> dict[str, str]:
    """Start EC2, make the VPC, an instance per node (``nodes``: name -> netns, address), the
    fabric the VPC router, and start the sync process; returns the configuration keys the lab
    adds (``ec2-api-endpoint``, the operator's metrics address). ``record`` records a
    started process (role, PID) so that ``lab down`` ends it."""
    if config.get("routing-mode") != "native":
        raise LabError(
            "ipam eni: ENI IPAM routes natively (upstream disables the tunnel): "
            "use --ipam eni (which is --set eni.enabled=true) or --set routingMode=native"
        )
    endpoint = _start_moto(lab_dir, record)
    ec2 = ec2_client(endpoint)
    vpc_id = ec2.create_vpc(
        CidrBlock=str(underlay),
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": lab}]}],
    )["Vpc"]["VpcId"]
    pods = pods_cidr(underlay)
    ec2.associate_vpc_cidr_block(VpcId=vpc_id, CidrBlock=str(pods))
    subnets = {
        role: ec2.create_subnet(
            VpcId=vpc_id,
            CidrBlock=str(cidr),
            AvailabilityZone=AVAILABILITY_ZONE,
            TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}],
        )["Subnet"]["SubnetId"]
        for role, cidr, tags in (
            ("nodes", underlay, [{"Key": "Name", "Value": f"{lab}-nodes"}]),
            ("pods", pods, [{"Key": PODS_SUBNET_TAG[0], "Value": PODS_SUBNET_TAG[1]}]),
        )
    }
    group = ec2.create_security_group(
        GroupName=f"{lab}-nodes", Description="pylium lab nodes", VpcId=vpc_id
    )["GroupId"]
    vpc = LabVPC(
        endpoint=endpoint,
        vpc_id=vpc_id,
        subnets=subnets,
        pods_cidr=str(pods),
        fabric_netns=fabric_netns,
        bridge=bridge,
        mtu=mtu,
    )
    # The fabric is the VPC router: every subnet's router address, forwarding, no redirects.
    nl.add_address(fabric_netns, bridge, ipaddress.IPv4Interface(f"{pods[1]}/{pods.prefixlen}"))
    nl.set_sysctl(fabric_netns, "net.ipv4.ip_forward", "1")
    for scope in ("all", "default", bridge):
        nl.set_sysctl(fabric_netns, f"net.ipv4.conf.{scope}.send_redirects", "0")
    image = _image(ec2)
    for node, (netns, address) in nodes.items():
        instance = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            InstanceType=INSTANCE_TYPE,
            SubnetId=subnets["nodes"],
            PrivateIpAddress=str(address.ip),
            SecurityGroupIds=[group],
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"{lab}-{node}"}]}
            ],
        )["Instances"][0]
        primary = next(
            i for i in instance["NetworkInterfaces"] if i["Attachment"]["DeviceIndex"] == 0
        )
        mac = str(primary["MacAddress"]).lower()
        nl.set_mac(netns, "eth0", mac)
        nl.replace_route(netns, ipaddress.IPv4Network("0.0.0.0/0"), gateway)
        vpc.nodes[node] = {"instance-id": instance["InstanceId"], "netns": netns, "mac": mac}
        metadata = {
            "instance-id": instance["InstanceId"],
            "instance-type": INSTANCE_TYPE,
            "vpc-id": vpc_id,
            "availability-zone": AVAILABILITY_ZONE,
            "first-interface-index": 1,
            "subnet-tags": {PODS_SUBNET_TAG[0]: PODS_SUBNET_TAG[1]},
        }
        (lab_dir / node).mkdir(parents=True, exist_ok=True)
        (lab_dir / node / "eni-metadata.json").write_text(json.dumps(metadata, indent=2))
    vpc.save(lab_dir)
    sync_once(vpc, ec2)
    pid = procs.spawn(
        [sys.executable, "-m", "pylium.lab.vpc", "sync", "--lab-dir", str(lab_dir)],
        log_path=lab_dir / "vpc.log",
    )
    record("vpc", pid)
    return {
        "ec2-api-endpoint": endpoint,
        "operator-prometheus-serve-addr": f"127.0.0.1:{procs.free_port()}",
    }


def agent_env(lab_dir: Path, node: str) -> dict[str, str] | None:
    """The agent's environment in an ENI lab: its instance's metadata (no IMDS here)."""
    path = lab_dir / node / "eni-metadata.json"
    if not path.exists():
        return None
    return {**os.environ, "PYLIUM_ENI_METADATA": f"@{path}"}


def operator_placement(lab_dir: Path, fabric_netns: str) -> dict[str, Any]:
    """Where the operator runs: in the fabric, or in an ENI lab in the root namespace with
    the EC2 environment (moto listens on the root namespace's loopback)."""
    if LabVPC.load(lab_dir) is None:
        return {"netns": fabric_netns}
    return {"netns": None, "env": aws_env()}


# -- the hypervisor: ENIs as devices, the router's view of their addresses ----------------


def fabric_port(node: str, index: int) -> str:
    """The fabric-side end of a node's ENI device ``eth<index>``."""
    name = f"{node}e{index}"
    if len(name) > 15:
        raise LabError(f"node {node}: ENI device name {name} longer than 15 characters")
    return name


def sync_once(vpc: LabVPC, ec2: Any) -> None:
    """Make the nodes' ENI devices and the router's neighbour entries match EC2."""
    owners = {info["instance-id"]: node for node, info in vpc.nodes.items()}
    wanted: dict[ipaddress.IPv4Address, str] = {}
    attached: dict[str, dict[int, tuple[str, str]]] = {node: {} for node in vpc.nodes}
    found = ec2.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": [vpc.vpc_id]}])[
        "NetworkInterfaces"
    ]
    for eni in found:
        attachment = eni.get("Attachment") or {}
        node = owners.get(attachment.get("InstanceId", ""))
        if node is None:
            continue
        mac = str(eni["MacAddress"]).lower()
        for address in eni.get("PrivateIpAddresses") or []:
            wanted[ipaddress.IPv4Address(address["PrivateIpAddress"])] = mac
        index = int(attachment.get("DeviceIndex") or 0)
        if index > 0:
            attached[node][index] = (mac, str(eni["PrivateIpAddress"]))
    for node, info in vpc.nodes.items():
        devices = nl.link_macs(info["netns"])
        for index, (mac, primary) in sorted(attached[node].items()):
            name = f"eth{index}"
            if devices.get(name) == mac:
                continue
            port = fabric_port(node, index)
            if name in devices:  # another ENI took this index
                nl.delete_link(vpc.fabric_netns, port)
            nl.add_veth(vpc.fabric_netns, port, info["netns"], name, mtu=vpc.mtu)
            nl.set_mac(info["netns"], name, mac)
            nl.set_master(vpc.fabric_netns, port, vpc.bridge)
            nl.add_address(info["netns"], name, ipaddress.IPv4Interface(f"{primary}/32"))
            log.info("ENI device attached", extra={"node": node, "device": name, "mac": mac})
        for name in devices:
            match = ENI_DEVICE.match(name)
            if match and int(match.group(1)) not in attached[node]:
                nl.delete_link(vpc.fabric_netns, fabric_port(node, int(match.group(1))))
                log.info("ENI device detached", extra={"node": node, "device": name})
    current = nl.permanent_neighbors(vpc.fabric_netns, vpc.bridge)
    for ip, mac in wanted.items():
        if current.get(ip) != mac:
            nl.replace_neighbor(vpc.fabric_netns, vpc.bridge, ip, mac)
    for ip in set(current) - set(wanted):
        nl.delete_neighbor(vpc.fabric_netns, vpc.bridge, ip)


def main(argv: list[str] | None = None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from pylium.runtime.daemon import setup_logging

    parser = argparse.ArgumentParser(prog="python -m pylium.lab.vpc", description=__doc__)
    parser.add_argument("command", choices=["sync"])
    parser.add_argument("--lab-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging(False)
    vpc = LabVPC.load(args.lab_dir)
    if vpc is None:
        print(f"Error: {args.lab_dir / VPC_FILE}: no lab VPC", file=sys.stderr)
        sys.exit(1)
    ec2 = ec2_client(vpc.endpoint)
    stop = threading.Event()
    # Not runtime.daemon's handler: pyroute2's namespace helpers are forked children that
    # inherit it and would log their every SIGTERM.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        try:
            sync_once(vpc, ec2)
        except (PyliumError, BotoCoreError, ClientError) as err:
            log.warning("VPC sync: %s", err)  # EC2 or a namespace busy: again next period
        stop.wait(SYNC_PERIOD)


if __name__ == "__main__":
    main()
