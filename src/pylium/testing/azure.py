"""Testing helper (not part of the layered package): an Azure Resource Manager protocol server
on loopback, with the instance metadata token endpoint and Azure AD's token endpoint.

Not a mock of pylium: an independent HTTP server speaking ARM's REST shapes, written from
Azure's REST API reference. It insists on what ARM insists on at the protocol level -- a
bearer token it issued (from ``/metadata/identity/oauth2/token`` with ``Metadata: true``, for
the user-assigned identity's ``client_id`` when one is registered, or from
``/<tenant>/oauth2/v2.0/token`` with the client secret), an ``api-version`` on every call, a
resource that exists -- and keeps state for what the IPAM touches: virtual machines (size,
location), scale sets (sku) and their instances' ``networkProfileConfiguration``, network
interfaces with IP configurations (standalone, and scale set NICs derived from the instance
profile), virtual networks whose subnets list the IP configurations in them, and Resource
SKUs (``MaxNetworkInterfaces``). Lists are paged (two items a page, ``nextLink``). PUTs of a
NIC or a scale set VM allocate addresses for new dynamic IP configurations from the subnet and
answer with ``Azure-AsyncOperation``, which reports ``InProgress`` once, then ``Succeeded``.
:meth:`throttle` makes the next calls answer 429. Like moto for EC2, it does not enforce the
256 IP configurations per NIC: the tests assert that pylium never exceeds them. Error codes
other than 401/404/429 are this server's, not verified against the real API.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from ipaddress import IPv4Network
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pylium.testing.loopback import APIError, LoopbackServer, running

PAGE = 2


class ARMError(APIError):
    """An ARM error answer (``{"error": {"code", "message"}}``)."""


@dataclass(slots=True)
class IPConfig:
    name: str
    ip: str
    subnet: str
    primary: bool = False


@dataclass(slots=True)
class NICState:
    id: str
    name: str
    vm: str
    primary: bool
    mac: str
    configs: list[IPConfig] = field(default_factory=list)
    nsg: str = ""


@dataclass(slots=True)
class SubnetState:
    id: str
    cidr: str
    taken: set[str] = field(default_factory=set)

    def take(self) -> str:
        hosts = [str(a) for a in IPv4Network(self.cidr).hosts()][3:]  # Azure keeps .1-.3
        ip = next((a for a in hosts if a not in self.taken), None)
        if ip is None:
            raise ARMError(400, "SubnetIsFull", f"{self.id} is full")
        self.taken.add(ip)
        return ip


class AzureARMServer(LoopbackServer):
    """The server and its state; :meth:`add_vnet`, :meth:`add_vm`, :meth:`add_scale_set`
    build the world."""

    def __init__(
        self,
        *,
        subscription: str = "00000000-0000-0000-0000-000000000001",
        group: str = "pylium-rg",
        location: str = "westeurope",
        identity: str = "",
        tenant: str = "tenant-1",
        client_id: str = "",
        client_secret: str = "",
    ) -> None:
        self.subscription = subscription
        self.group = group
        self.location = location
        self.identity = identity
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.tokens: set[str] = set()
        self.subnets: dict[str, SubnetState] = {}
        self.vnets: dict[str, list[str]] = {}
        self.vms: dict[str, tuple[str, list[str]]] = {}
        """VM ID -> (size, NIC names)."""
        self.scale_sets: dict[str, tuple[str, dict[str, list[dict[str, Any]]]]] = {}
        """name -> (sku, instance id -> networkInterfaceConfigurations)."""
        self.nics: dict[str, NICState] = {}
        """NIC ID (lower case) -> state."""
        self.skus: dict[str, int] = {}
        self.operations: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []
        self.throttled = 0
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._listen(self._handler())

    @property
    def group_path(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.group}"

    # -- world building -------------------------------------------------------------------------

    def add_vnet(self, name: str, subnets: dict[str, str]) -> dict[str, str]:
        """A virtual network; returns subnet name -> subnet ID."""
        out = {}
        vnet = f"{self.group_path}/providers/Microsoft.Network/virtualNetworks/{name}"
        self.vnets[vnet] = []
        for sname, cidr in subnets.items():
            sid = f"{vnet}/subnets/{sname}"
            self.subnets[sid.lower()] = SubnetState(sid, cidr)
            self.vnets[vnet].append(sid)
            out[sname] = sid
        return out

    def add_sku(self, size: str, max_nics: int) -> None:
        self.skus[size] = max_nics

    def _mac(self) -> str:
        n = next(self._ids)
        return f"00-0D-3A-00-{n // 256:02X}-{n % 256:02X}"

    def add_vm(self, name: str, size: str, subnet: str, nics: int = 1) -> str:
        """A standalone VM with ``nics`` NICs (the first primary) in ``subnet``."""
        vm = f"{self.group_path}/providers/Microsoft.Compute/virtualMachines/{name}"
        names = []
        for i in range(nics):
            nic_name = f"{name}-nic{i}"
            nic_id = f"{self.group_path}/providers/Microsoft.Network/networkInterfaces/{nic_name}"
            ip = self.subnets[subnet.lower()].take()
            self.nics[nic_id.lower()] = NICState(
                nic_id, nic_name, vm, i == 0, self._mac(), [IPConfig("ipconfig1", ip, subnet, True)]
            )
            names.append(nic_name)
        self.vms[vm] = (size, names)
        return vm

    def add_scale_set(self, name: str, sku: str, subnet: str, instances: int) -> list[str]:
        """A scale set with one NIC per instance; returns the instances' VM IDs."""
        ss = f"{self.group_path}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}"
        members: dict[str, list[dict[str, Any]]] = {}
        out = []
        for i in range(instances):
            nic_name = f"{name}-nic"
            members[str(i)] = [
                {
                    "name": nic_name,
                    "properties": {
                        "primary": True,
                        "ipConfigurations": [
                            {
                                "name": "ipconfig1",
                                "properties": {"primary": True, "subnet": {"id": subnet}},
                            }
                        ],
                    },
                }
            ]
            vm = f"{ss}/virtualMachines/{i}"
            nic_id = f"{vm}/networkInterfaces/{nic_name}"
            ip = self.subnets[subnet.lower()].take()
            self.nics[nic_id.lower()] = NICState(
                nic_id, nic_name, vm, True, self._mac(), [IPConfig("ipconfig1", ip, subnet, True)]
            )
            out.append(vm)
        self.scale_sets[name] = (sku, members)
        return out

    def throttle(self, n: int) -> None:
        """The next ``n`` ARM calls answer 429."""
        self.throttled = n

    def nic(self, nic_id: str) -> NICState:
        return self.nics[nic_id.lower()]

    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, p in self.calls if m == method and fragment in p)

    # -- resources as ARM shows them --------------------------------------------------------------

    def _nic_json(self, n: NICState) -> dict[str, Any]:
        return {
            "id": n.id,
            "name": n.name,
            "location": self.location,
            "type": "Microsoft.Network/networkInterfaces",
            "properties": {
                "provisioningState": "Succeeded",
                "primary": n.primary,
                "macAddress": n.mac,
                **(
                    {"virtualMachine": {"id": n.vm}}
                    if "virtualMachineScaleSets" not in n.id
                    else {}
                ),
                **({"networkSecurityGroup": {"id": n.nsg}} if n.nsg else {}),
                "ipConfigurations": [
                    {
                        "id": f"{n.id}/ipConfigurations/{c.name}",
                        "name": c.name,
                        "properties": {
                            "provisioningState": "Succeeded",
                            "privateIPAddress": c.ip,
                            "privateIPAllocationMethod": "Dynamic",
                            "privateIPAddressVersion": "IPv4",
                            "primary": c.primary,
                            "subnet": {"id": c.subnet},
                        },
                    }
                    for c in n.configs
                ],
            },
        }

    def _vnet_json(self, vnet: str) -> dict[str, Any]:
        subnets = []
        for sid in self.vnets[vnet]:
            st = self.subnets[sid.lower()]
            configs = [
                {"id": f"{n.id}/ipConfigurations/{c.name}"}
                for n in self.nics.values()
                for c in n.configs
                if c.subnet.lower() == sid.lower()
            ]
            subnets.append(
                {
                    "id": sid,
                    "name": sid.rsplit("/", 1)[1],
                    "properties": {"addressPrefix": st.cidr, "ipConfigurations": configs},
                }
            )
        return {
            "id": vnet,
            "name": vnet.rsplit("/", 1)[1],
            "location": self.location,
            "properties": {"subnets": subnets},
        }

    def _vmss_vm_id(self, ss: str, instance: str) -> str:
        scale_set = f"{self.group_path}/providers/Microsoft.Compute/virtualMachineScaleSets/{ss}"
        return f"{scale_set}/virtualMachines/{instance}"

    def _vmss_vm_json(self, ss: str, instance: str) -> dict[str, Any]:
        sku, members = self.scale_sets[ss]
        return {
            "id": self._vmss_vm_id(ss, instance),
            "instanceId": instance,
            "location": self.location,
            "sku": {"name": sku},
            "properties": {
                "networkProfileConfiguration": {"networkInterfaceConfigurations": members[instance]}
            },
        }

    # -- the protocol ---------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                try:
                    with server.lock:
                        status, payload, headers = server._dispatch(
                            self.command, self.path, dict(self.headers.items()), raw
                        )
                except ARMError as err:
                    status = err.status
                    payload = {"error": {"code": err.code, "message": err.message}}
                    if err.status == 429:
                        headers = {"Retry-After": "0"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_PUT = _serve
            do_POST = _serve

        return Handler

    def _issue(self) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_on": str(int(time.time()) + 3600),
            "resource": "https://management.azure.com/",
        }

    def _dispatch(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        lower = {k.lower(): v for k, v in headers.items()}
        if parts.path == "/metadata/identity/oauth2/token":
            if lower.get("metadata") != "true":
                raise ARMError(400, "bad_request", "Required metadata header not specified")
            if query.get("client_id", "") != self.identity:
                raise ARMError(400, "invalid_request", "Identity not found")
            return 200, self._issue(), {}
        if parts.path == f"/{self.tenant}/oauth2/v2.0/token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if (form.get("client_id"), form.get("client_secret")) != (
                self.client_id,
                self.client_secret,
            ) or not self.client_secret:
                raise ARMError(401, "invalid_client", "AADSTS7000215: Invalid client secret")
            return 200, self._issue(), {}
        auth = lower.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise ARMError(401, "AuthenticationFailed", "Authentication failed.")
        if not query.get("api-version"):
            raise ARMError(400, "MissingApiVersionParameter", "The api-version is required")
        self.calls.append((method, parts.path))
        if self.throttled > 0:
            self.throttled -= 1
            raise ARMError(429, "TooManyRequests", "The request is being throttled.")
        body = json.loads(raw) if raw else None
        return self._route(method, parts.path, query, body)

    def _paged(self, path: str, query: dict[str, str], items: list[Any]) -> dict[str, Any]:
        skip = int(query.get("$skiptoken") or 0)
        page: dict[str, Any] = {"value": items[skip : skip + PAGE]}
        if skip + PAGE < len(items):
            page["nextLink"] = f"{self.url}{path}?" + urlencode(
                {**query, "$skiptoken": str(skip + PAGE)}
            )
        return page

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        g = self.group_path
        compute = f"{g}/providers/Microsoft.Compute"
        network = f"{g}/providers/Microsoft.Network"
        items: list[Any]
        if path.startswith("/operations/"):
            op = path.rsplit("/", 1)[1]
            left = self.operations.get(op, 0)
            self.operations[op] = left - 1
            return 200, {"status": "InProgress" if left > 0 else "Succeeded"}, {}
        if path == f"/subscriptions/{self.subscription}/providers/Microsoft.Compute/skus":
            wanted = query.get("$filter", "")
            items = [
                {
                    "resourceType": "virtualMachines",
                    "name": size,
                    "locations": [self.location],
                    "capabilities": [{"name": "MaxNetworkInterfaces", "value": str(n)}],
                }
                for size, n in sorted(self.skus.items())
                if f"'{self.location}'" in wanted
            ]
            return 200, self._paged(path, query, items), {}
        if method == "GET" and path == f"{compute}/virtualMachines":
            items = [
                {
                    "id": vm,
                    "name": vm.rsplit("/", 1)[1],
                    "location": self.location,
                    "properties": {"hardwareProfile": {"vmSize": size}},
                }
                for vm, (size, _) in sorted(self.vms.items())
            ]
            return 200, self._paged(path, query, items), {}
        if method == "GET" and path == f"{compute}/virtualMachineScaleSets":
            items = [
                {
                    "id": f"{compute}/virtualMachineScaleSets/{name}",
                    "name": name,
                    "location": self.location,
                    "sku": {"name": sku},
                }
                for name, (sku, _) in sorted(self.scale_sets.items())
            ]
            return 200, self._paged(path, query, items), {}
        if method == "GET" and path == f"{network}/networkInterfaces":
            items = [
                self._nic_json(n)
                for n in sorted(self.nics.values(), key=lambda n: n.id)
                if "virtualMachineScaleSets" not in n.id
            ]
            return 200, self._paged(path, query, items), {}
        if method == "GET" and path == f"{network}/virtualNetworks":
            items = [self._vnet_json(v) for v in sorted(self.vnets)]
            return 200, self._paged(path, query, items), {}
        if path.startswith(f"{compute}/virtualMachineScaleSets/"):
            rest = path[len(f"{compute}/virtualMachineScaleSets/") :].split("/")
            if rest[0] not in self.scale_sets:
                raise ARMError(404, "ResourceNotFound", f"scale set {rest[0]} not found")
            if method == "GET" and rest[1:] == ["networkInterfaces"]:
                prefix = f"{compute}/virtualMachineScaleSets/{rest[0]}/".lower()
                items = [
                    self._nic_json(n)
                    for n in sorted(self.nics.values(), key=lambda n: n.id)
                    if n.id.lower().startswith(prefix)
                ]
                return 200, self._paged(path, query, items), {}
            if len(rest) == 3 and rest[1] == "virtualMachines":
                if rest[2] not in self.scale_sets[rest[0]][1]:
                    raise ARMError(404, "ResourceNotFound", f"instance {rest[2]} not found")
                if method == "PUT":
                    self._put_vmss_vm(rest[0], rest[2], body)
                    return 200, self._vmss_vm_json(rest[0], rest[2]), self._async()
                return 200, self._vmss_vm_json(rest[0], rest[2]), {}
        if path.startswith(f"{network}/networkInterfaces/"):
            nic = self.nics.get(path.lower())
            if nic is None:
                raise ARMError(404, "ResourceNotFound", f"{path} not found")
            if method == "PUT":
                self._put_nic(nic, body)
                return 200, self._nic_json(nic), self._async()
            return 200, self._nic_json(nic), {}
        raise ARMError(404, "ResourceNotFound", f"{method} {path}")

    def _async(self) -> dict[str, str]:
        op = f"op{next(self._ids)}"
        self.operations[op] = 1
        return {"Azure-AsyncOperation": f"{self.url}/operations/{op}?api-version=2023-09-01"}

    def _put_nic(self, nic: NICState, body: Any) -> None:
        configs = ((body or {}).get("properties") or {}).get("ipConfigurations")
        if not isinstance(configs, list) or not configs:
            raise ARMError(400, "InvalidRequestFormat", "properties.ipConfigurations required")
        self._apply(nic, configs)

    def _apply(self, nic: NICState, configs: list[dict[str, Any]]) -> None:
        by_name = {c.name: c for c in nic.configs}
        new: list[IPConfig] = []
        for c in configs:
            name = c.get("name")
            props = c.get("properties") or {}
            subnet = str((props.get("subnet") or {}).get("id") or "")
            if not name or not subnet:
                raise ARMError(400, "InvalidRequestFormat", "ipConfiguration needs name and subnet")
            if subnet.lower() not in self.subnets:
                raise ARMError(400, "InvalidResourceReference", f"subnet {subnet} not found")
            if name in by_name:
                new.append(by_name[name])
            else:
                ip = self.subnets[subnet.lower()].take()
                new.append(IPConfig(name, ip, subnet, bool(props.get("primary"))))
        for old in nic.configs:
            if old.name not in {c.name for c in new}:
                self.subnets[old.subnet.lower()].taken.discard(old.ip)
        if not any(c.primary for c in new):
            raise ARMError(400, "NicMustHavePrimaryIpConfiguration", "no primary ipconfig")
        nic.configs = new

    def _put_vmss_vm(self, ss: str, instance: str, body: Any) -> None:
        profile = ((body or {}).get("properties") or {}).get("networkProfileConfiguration") or {}
        configs = profile.get("networkInterfaceConfigurations")
        if not isinstance(configs, list) or not configs:
            raise ARMError(400, "InvalidRequestFormat", "networkInterfaceConfigurations required")
        vm = self._vmss_vm_id(ss, instance)
        for cfg in configs:
            nic = self.nics.get(f"{vm}/networkInterfaces/{cfg.get('name')}".lower())
            if nic is None:
                raise ARMError(400, "InvalidParameter", f"no NIC {cfg.get('name')}")
            self._apply(nic, (cfg.get("properties") or {}).get("ipConfigurations") or [])
        self.scale_sets[ss][1][instance] = configs


@contextmanager
def azure_server(**kwargs: Any) -> Iterator[AzureARMServer]:
    """A running server on 127.0.0.1 (a free port), shut down on exit."""
    with running(AzureARMServer(**kwargs)) as server:
        yield server
