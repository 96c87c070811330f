"""Testing helper (not part of the layered package): an AlibabaCloud ECS/VPC RPC protocol
server on loopback.

Not a mock of pylium: an independent HTTP server speaking the RPC protocol the real ECS and
VPC endpoints speak, written from Alibaba's API reference. It rejects what the real service
would reject at the protocol level -- a missing common parameter, a wrong ``Version`` for the
product, an unknown AccessKeyId, a bad ``Signature`` (verified with its own implementation of
signature version 1.0, the percent-encoding done the way Alibaba's reference describes: URL
encoding with ``+`` -> ``%20``, ``*`` -> ``%2A``, ``%7E`` -> ``~``), a reused
``SignatureNonce``, a malformed ``Timestamp`` -- and keeps state for the calls the IPAM makes
(DescribeNetworkInterfaces, DescribeVSwitches, DescribeSecurityGroups, DescribeInstanceTypes,
CreateNetworkInterface, AttachNetworkInterface (``Attaching`` for one describe, then
``InUse``), AssignPrivateIpAddresses, UnassignPrivateIpAddresses, DeleteNetworkInterface),
with Alibaba's response shapes and paging. Addresses come out of the vSwitch CIDR, and
``AvailableIpAddressCount`` follows them. Like moto for EC2, it does not enforce instance-type
limits: the tests assert that pylium never exceeds them. :meth:`throttle` makes the next
calls fail with ``Throttling.User``. Error codes other than the signature and throttling ones
are this server's, not verified against the real API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from ipaddress import IPv4Network
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit

from pylium.testing.loopback import APIError, LoopbackServer, running

ECS_VERSION = "2014-05-26"
VPC_VERSION = "2016-04-28"
VPC_ACTIONS = frozenset({"DescribeVSwitches"})
COMMON = (
    "Action",
    "Format",
    "Version",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)


def _encode(value: str) -> str:
    return quote_plus(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    query = "&".join(
        f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    to_sign = f"{method}&{_encode('/')}&{_encode(query)}"
    mac = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@dataclass(slots=True)
class VSwitch:
    id: str
    vpc: str
    zone: str
    cidr: str
    tags: dict[str, str] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)

    def hosts(self) -> list[str]:
        # Alibaba reserves the first and the last three addresses of a vSwitch.
        addresses = [str(a) for a in IPv4Network(self.cidr).hosts()]
        return addresses[2:-2]

    def take(self) -> str:
        ip = next((a for a in self.hosts() if a not in self.taken), None)
        if ip is None:
            raise APIError(400, "InvalidVSwitchId.IpNotEnough", f"{self.id} has no free IP")
        self.taken.add(ip)
        return ip

    @property
    def available(self) -> int:
        return len(self.hosts()) - len(self.taken)


@dataclass(slots=True)
class ENI:
    id: str
    vswitch: str
    vpc: str
    zone: str
    primary_ip: str
    mac: str
    groups: list[str]
    type: str = "Secondary"
    status: str = "Available"
    instance: str = ""
    secondary: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(slots=True)
class Instance:
    id: str
    type: str
    zone: str
    vpc: str


@dataclass(slots=True)
class State:
    credentials: dict[str, str]
    region: str = "cn-hangzhou"
    vswitches: dict[str, VSwitch] = field(default_factory=dict)
    groups: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    instance_types: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """type -> (EniQuantity, EniPrivateIpAddressQuantity, EniIpv6AddressQuantity)."""
    enis: dict[str, ENI] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    throttled: int = 0
    attaching: dict[str, int] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids):08x}"


class AlibabaCloudServer(LoopbackServer):
    """The server and its state; :meth:`add_vswitch` and friends build the world."""

    def __init__(self, *, key_id: str = "LTAItest", secret: str = "secret-test") -> None:
        self.key_id = key_id
        self.secret = secret
        self.state = State(credentials={key_id: secret})
        self.lock = threading.Lock()
        self._listen(self._handler())

    # -- world building -------------------------------------------------------------------------

    def add_vswitch(self, vpc: str, zone: str, cidr: str, **tags: str) -> str:
        with self.lock:
            vsw = VSwitch(self.state.new_id("vsw"), vpc, zone, cidr, dict(tags))
            self.state.vswitches[vsw.id] = vsw
            return vsw.id

    def add_security_group(self, vpc: str, **tags: str) -> str:
        with self.lock:
            sg = self.state.new_id("sg")
            self.state.groups[sg] = (vpc, dict(tags))
            return sg

    def add_instance_type(self, name: str, enis: int, ips: int, ipv6: int = 0) -> None:
        self.state.instance_types[name] = (enis, ips, ipv6)

    def run_instance(self, instance_type: str, vswitch: str, group: str) -> str:
        """An instance with its primary ENI (status InUse) in ``vswitch``."""
        with self.lock:
            vsw = self.state.vswitches[vswitch]
            inst = Instance(self.state.new_id("i"), instance_type, vsw.zone, vsw.vpc)
            self.state.instances[inst.id] = inst
            eni = self._new_eni(vsw, [group], "Primary")
            eni.status, eni.instance = "InUse", inst.id
            return inst.id

    def _new_eni(self, vsw: VSwitch, groups: list[str], kind: str) -> ENI:
        n = next(self.state.ids)
        eni = ENI(
            id=f"eni-{n:08x}",
            vswitch=vsw.id,
            vpc=vsw.vpc,
            zone=vsw.zone,
            primary_ip=vsw.take(),
            mac=f"00:16:3e:00:{n // 256:02x}:{n % 256:02x}",
            groups=groups,
            type=kind,
        )
        self.state.enis[eni.id] = eni
        return eni

    def throttle(self, n: int) -> None:
        """The next ``n`` calls answer ``Throttling.User``."""
        self.state.throttled = n

    def enis_of(self, instance: str) -> list[ENI]:
        with self.lock:
            return [e for e in self.state.enis.values() if e.instance == instance]

    def calls(self, action: str | None = None) -> int:
        return sum(1 for a, _ in self.state.calls if action in (None, a))

    # -- the protocol ---------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    body = self.rfile.read(length).decode()
                    params.update(parse_qsl(body, keep_blank_values=True))
                request_id = str(uuid.uuid4()).upper()
                try:
                    with server.lock:
                        result = server._dispatch(self.command, params)
                    status, payload = 200, {"RequestId": request_id, **result}
                except APIError as err:
                    status = err.status
                    payload = {
                        "RequestId": request_id,
                        "HostId": "ecs.aliyuncs.com",
                        "Code": err.code,
                        "Message": err.message,
                    }
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        return Handler

    def _authenticate(self, method: str, params: dict[str, str]) -> None:
        missing = [k for k in COMMON if not params.get(k)]
        if missing:
            raise APIError(400, "MissingParameter", f"missing {', '.join(missing)}")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise APIError(400, "InvalidParameter", "SignatureMethod/SignatureVersion")
        if params["Format"] != "JSON":
            raise APIError(400, "InvalidParameter", "Format must be JSON here")
        try:
            datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise APIError(400, "InvalidTimeStamp.Format", params["Timestamp"]) from None
        secret = self.state.credentials.get(params["AccessKeyId"])
        if secret is None:
            raise APIError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if not hmac.compare_digest(params["Signature"], expected_signature(method, params, secret)):
            raise APIError(400, "SignatureDoesNotMatch", "Specified signature is not matched.")
        if params["SignatureNonce"] in self.state.nonces:
            raise APIError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self.state.nonces.add(params["SignatureNonce"])

    def _dispatch(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        self._authenticate(method, params)
        action = params["Action"]
        want = VPC_VERSION if action in VPC_ACTIONS else ECS_VERSION
        if params["Version"] != want:
            raise APIError(400, "InvalidVersion", f"{action} is served at Version {want}")
        clean = {k: v for k, v in params.items() if k not in COMMON}
        self.state.calls.append((action, clean))
        if self.state.throttled > 0:
            self.state.throttled -= 1
            raise APIError(400, "Throttling.User", "Request was denied due to user flow control.")
        handler = getattr(self, f"_do_{action}", None)
        if handler is None:
            raise APIError(400, "InvalidAction.NotFound", f"{action} is not supported")
        result: dict[str, Any] = handler(clean)
        return result

    @staticmethod
    def _list(params: dict[str, str], name: str) -> list[str]:
        return [
            v for k, v in sorted(params.items(), key=lambda kv: kv[0]) if k.startswith(f"{name}.")
        ]

    @staticmethod
    def _page(params: dict[str, str], items: list[Any], outer: str, inner: str) -> dict[str, Any]:
        number = int(params.get("PageNumber") or 1)
        size = int(params.get("PageSize") or 10)
        chunk = items[(number - 1) * size : number * size]
        return {
            outer: {inner: chunk},
            "TotalCount": len(items),
            "PageNumber": number,
            "PageSize": size,
        }

    def _eni(self, params: dict[str, str]) -> ENI:
        eni = self.state.enis.get(params.get("NetworkInterfaceId", ""))
        if eni is None:
            raise APIError(404, "InvalidEniId.NotFound", "The specified ENI does not exist.")
        return eni

    def _eni_json(self, e: ENI) -> dict[str, Any]:
        return {
            "NetworkInterfaceId": e.id,
            "Status": e.status,
            "Type": e.type,
            "InstanceId": e.instance,
            "VSwitchId": e.vswitch,
            "VpcId": e.vpc,
            "ZoneId": e.zone,
            "PrivateIpAddress": e.primary_ip,
            "MacAddress": e.mac,
            "Description": e.description,
            "PrivateIpSets": {
                "PrivateIpSet": [{"PrivateIpAddress": e.primary_ip, "Primary": True}]
                + [{"PrivateIpAddress": ip, "Primary": False} for ip in e.secondary]
            },
            "SecurityGroupIds": {"SecurityGroupId": list(e.groups)},
            "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in sorted(e.tags.items())]},
        }

    def _do_DescribeNetworkInterfaces(self, params: dict[str, str]) -> dict[str, Any]:
        ids = self._list(params, "NetworkInterfaceId")
        out = []
        for e in sorted(self.state.enis.values(), key=lambda e: e.id):
            if params.get("VpcId") and e.vpc != params["VpcId"]:
                continue
            if params.get("InstanceId") and e.instance != params["InstanceId"]:
                continue
            if ids and e.id not in ids:
                continue
            if e.status == "Attaching":
                left = self.state.attaching.get(e.id, 0)
                if left <= 0:
                    e.status = "InUse"
                self.state.attaching[e.id] = left - 1
            out.append(self._eni_json(e))
        return self._page(params, out, "NetworkInterfaceSets", "NetworkInterfaceSet")

    def _do_DescribeVSwitches(self, params: dict[str, str]) -> dict[str, Any]:
        out = [
            {
                "VSwitchId": v.id,
                "VpcId": v.vpc,
                "ZoneId": v.zone,
                "CidrBlock": v.cidr,
                "AvailableIpAddressCount": v.available,
                "Status": "Available",
                "Tags": {"Tag": [{"Key": k, "Value": val} for k, val in sorted(v.tags.items())]},
            }
            for v in sorted(self.state.vswitches.values(), key=lambda v: v.id)
            if not params.get("VpcId") or v.vpc == params["VpcId"]
        ]
        return self._page(params, out, "VSwitches", "VSwitch")

    def _do_DescribeSecurityGroups(self, params: dict[str, str]) -> dict[str, Any]:
        out = [
            {
                "SecurityGroupId": sg,
                "VpcId": vpc,
                "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in sorted(tags.items())]},
            }
            for sg, (vpc, tags) in sorted(self.state.groups.items())
            if not params.get("VpcId") or vpc == params["VpcId"]
        ]
        return self._page(params, out, "SecurityGroups", "SecurityGroup")

    def _do_DescribeInstanceTypes(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = self._list(params, "InstanceTypes")
        return {
            "InstanceTypes": {
                "InstanceType": [
                    {
                        "InstanceTypeId": name,
                        "EniQuantity": enis,
                        "EniPrivateIpAddressQuantity": ips,
                        "EniIpv6AddressQuantity": v6,
                    }
                    for name, (enis, ips, v6) in sorted(self.state.instance_types.items())
                    if not wanted or name in wanted
                ]
            }
        }

    def _do_AssignPrivateIpAddresses(self, params: dict[str, str]) -> dict[str, Any]:
        eni = self._eni(params)
        count = int(params.get("SecondaryPrivateIpAddressCount") or 0)
        if count < 1:
            raise APIError(400, "InvalidParameter", "SecondaryPrivateIpAddressCount")
        vsw = self.state.vswitches[eni.vswitch]
        new = [vsw.take() for _ in range(count)]
        eni.secondary += new
        return {
            "AssignedPrivateIpAddressesSet": {
                "NetworkInterfaceId": eni.id,
                "PrivateIpSet": {"PrivateIpAddress": new},
            }
        }

    def _do_UnassignPrivateIpAddresses(self, params: dict[str, str]) -> dict[str, Any]:
        eni = self._eni(params)
        ips = self._list(params, "PrivateIpAddress")
        unknown = [ip for ip in ips if ip not in eni.secondary]
        if not ips or unknown:
            raise APIError(400, "InvalidIp.NotFound", f"not on {eni.id}: {unknown}")
        vsw = self.state.vswitches[eni.vswitch]
        for ip in ips:
            eni.secondary.remove(ip)
            vsw.taken.discard(ip)
        return {}

    def _do_CreateNetworkInterface(self, params: dict[str, str]) -> dict[str, Any]:
        vsw = self.state.vswitches.get(params.get("VSwitchId", ""))
        if vsw is None:
            raise APIError(
                404, "InvalidVSwitchId.NotFound", "The VSwitchId provided does not exist"
            )
        groups = self._list(params, "SecurityGroupIds") or (
            [params["SecurityGroupId"]] if params.get("SecurityGroupId") else []
        )
        if not groups or any(g not in self.state.groups for g in groups):
            raise APIError(400, "InvalidSecurityGroupId.NotFound", f"{groups}")
        eni = self._new_eni(vsw, groups, "Secondary")
        eni.description = params.get("Description", "")
        i = 1
        while f"Tag.{i}.Key" in params:
            eni.tags[params[f"Tag.{i}.Key"]] = params.get(f"Tag.{i}.Value", "")
            i += 1
        count = int(params.get("SecondaryPrivateIpAddressCount") or 0)
        eni.secondary = [vsw.take() for _ in range(count)]
        return {"NetworkInterfaceId": eni.id, **self._eni_json(eni)}

    def _do_AttachNetworkInterface(self, params: dict[str, str]) -> dict[str, Any]:
        eni = self._eni(params)
        inst = self.state.instances.get(params.get("InstanceId", ""))
        if inst is None:
            raise APIError(
                404, "InvalidInstanceId.NotFound", "The specified instance does not exist"
            )
        if eni.status != "Available":
            raise APIError(403, "InvalidOperation.InvalidEniState", f"{eni.id} is {eni.status}")
        if eni.zone != inst.zone:
            raise APIError(403, "InvalidOperation.DifferentZone", "ENI and instance zones differ")
        eni.status, eni.instance = "Attaching", inst.id
        self.state.attaching[eni.id] = 1
        return {}

    def _do_DeleteNetworkInterface(self, params: dict[str, str]) -> dict[str, Any]:
        eni = self._eni(params)
        if eni.status != "Available":
            raise APIError(403, "InvalidOperation.InvalidEniState", f"{eni.id} is {eni.status}")
        vsw = self.state.vswitches[eni.vswitch]
        for ip in [eni.primary_ip, *eni.secondary]:
            vsw.taken.discard(ip)
        del self.state.enis[eni.id]
        return {}


@contextmanager
def alibabacloud_server() -> Iterator[AlibabaCloudServer]:
    """A running server on 127.0.0.1 (a free port), shut down on exit."""
    with running(AlibabaCloudServer()) as server:
        yield server
