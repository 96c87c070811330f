"""L2: Azure IPAM (``ipam: azure``), pure: ARM resource shapes in, interfaces and request
bodies out.

Upstream's model (``pkg/azure/api``, ``pkg/azure/ipam``): the operator lists the network
interfaces of the virtual machines and VM scale sets of ``azure-resource-group`` in
``azure-subscription-id``, and adds pod addresses as extra IP configurations on a node's
existing NIC (Azure IPAM never creates NICs): on a standalone VM's NIC by PUTting the NIC
with the new configurations appended, on a scale set instance by PUTting the VMSS VM with them
appended to its ``networkProfileConfiguration``. New configurations are named
``Cilium-<8 random hex>``, dynamic, in the NIC's subnet. A NIC holds at most 256 IP
configurations (:data:`INTERFACE_ADDRESS_LIMIT`, an Azure limit independent of the VM size);
the NICs a VM size allows come from the Resource SKUs API (``MaxNetworkInterfaces``).

Subnets report no free-address count in ARM: it is the subnet's size minus Azure's 5
reserved addresses minus the IP configurations the subnet lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from pylium.core.ipam.cloud.plan import Interface, Limits, NodeSpec, Subnet

NETWORK_API_VERSION = "2023-09-01"
"""Microsoft.Network (networkInterfaces, virtualNetworks)."""
COMPUTE_API_VERSION = "2023-09-01"
"""Microsoft.Compute (virtualMachines, virtualMachineScaleSets and their VMs)."""
VMSS_NIC_API_VERSION = "2018-10-01"
"""The scale set NIC listing (served by Microsoft.Network under Microsoft.Compute paths)."""
SKUS_API_VERSION = "2021-07-01"
"""Microsoft.Compute/skus (Resource SKUs: MaxNetworkInterfaces per VM size)."""
INTERFACE_ADDRESS_LIMIT = 256
"""IP configurations per NIC (upstream ``types.InterfaceAddressLimit``)."""
RESERVED_PER_SUBNET = 5
"""Azure keeps the first four addresses and the last of every subnet."""
RESOURCE_MANAGER = "https://management.azure.com"
IPCONFIG_PREFIX = "Cilium-"


def same_id(a: str, b: str) -> bool:
    """ARM resource IDs compare case-insensitively."""
    return a.lower() == b.lower()


def resource_group_path(subscription: str, group: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}"


@dataclass(frozen=True, slots=True)
class AzureSpec(NodeSpec):
    """``CiliumNode.spec.azure`` (``interface-name``) plus ``spec.instance-id``: the VM's ARM
    resource ID (a scale set instance's ``.../virtualMachineScaleSets/<s>/virtualMachines/<n>``).
    ``instance_type`` is the VM size as ARM reports it, not a spec field."""

    spec_key: str = "azure"
    interface_name: str = ""

    @classmethod
    def from_cilium_node(cls, spec: Mapping[str, Any], vm_size: str = "") -> AzureSpec:
        azure = spec.get("azure") or {}
        return cls(
            instance_id=str(spec.get("instance-id") or ""),
            instance_type=vm_size,
            interface_name=str(azure.get("interface-name") or ""),
        )

    def problems(self) -> list[str]:
        return [] if self.instance_id else ["spec.instance-id is empty"]


@dataclass(frozen=True, slots=True)
class NIC:
    """A network interface as ARM shows it."""

    id: str
    name: str
    vm_id: str
    """The VM (or scale set VM) it is attached to; "" when unattached."""
    primary: bool
    mac: str
    subnet_id: str
    primary_ip: str
    addresses: tuple[str, ...]
    """The private IPs of the non-primary IP configurations."""
    security_group: str
    state: str
    vmss: str = ""
    """The scale set's name when the NIC belongs to a scale set instance."""
    raw: Mapping[str, Any] | None = None


def _vmss_vm_of(nic_id: str) -> tuple[str, str]:
    """(VM resource ID, scale set name) of a scale set NIC ID
    ``.../virtualMachineScaleSets/<s>/virtualMachines/<n>/networkInterfaces/<nic>``."""
    parts = nic_id.split("/")
    lower = [p.lower() for p in parts]
    if "virtualmachinescalesets" not in lower:
        return "", ""
    i = lower.index("virtualmachinescalesets")
    return "/".join(parts[: i + 4]), parts[i + 1]


def parse_nic(raw: Mapping[str, Any]) -> NIC:
    """One ``Microsoft.Network/networkInterfaces`` resource."""
    props = raw.get("properties") or {}
    configs = props.get("ipConfigurations") or []
    primary_cfg = next(
        (c for c in configs if (c.get("properties") or {}).get("primary")),
        configs[0] if configs else {},
    )
    pprops = primary_cfg.get("properties") or {}
    vm_id = str((props.get("virtualMachine") or {}).get("id") or "")
    vmss_vm, vmss = _vmss_vm_of(str(raw.get("id") or ""))
    return NIC(
        id=str(raw["id"]),
        name=str(raw.get("name") or ""),
        vm_id=vm_id or vmss_vm,
        primary=bool(props.get("primary", False)),
        mac=str(props.get("macAddress") or "").replace("-", ":").lower(),
        subnet_id=str((pprops.get("subnet") or {}).get("id") or ""),
        primary_ip=str(pprops.get("privateIPAddress") or ""),
        addresses=tuple(
            str((c.get("properties") or {}).get("privateIPAddress"))
            for c in configs
            if c is not primary_cfg and (c.get("properties") or {}).get("privateIPAddress")
        ),
        security_group=str((props.get("networkSecurityGroup") or {}).get("id") or ""),
        state=str(props.get("provisioningState") or ""),
        vmss=vmss,
        raw=raw,
    )


def interfaces_of(nics: Iterable[NIC], vm_id: str, interface_name: str = "") -> list[Interface]:
    """The VM's NICs as the state machine's interfaces: the primary NIC is number 0, the
    others follow by name; with ``interface-name`` only that NIC (it alone holds pod
    addresses)."""
    mine = sorted(
        (n for n in nics if vm_id and same_id(n.vm_id, vm_id)),
        key=lambda n: (not n.primary, n.name),
    )
    return [
        Interface(
            id=n.id,
            number=i,
            subnet_id=n.subnet_id,
            primary_ip=n.primary_ip,
            addresses=n.addresses,
            security_groups=(n.security_group,) if n.security_group else (),
            mac=n.mac,
        )
        for i, n in enumerate(mine)
        if not interface_name or n.name == interface_name
    ]


def parse_subnets(vnets: Iterable[Mapping[str, Any]]) -> list[Subnet]:
    """Subnets of ``Microsoft.Network/virtualNetworks`` resources, with free addresses."""
    out = []
    for vnet in vnets:
        location = str(vnet.get("location") or "")
        for s in (vnet.get("properties") or {}).get("subnets") or []:
            props = s.get("properties") or {}
            prefix = str(props.get("addressPrefix") or (props.get("addressPrefixes") or [""])[0])
            if not prefix:
                continue
            size = ip_network(prefix, strict=False).num_addresses
            taken = len(props.get("ipConfigurations") or [])
            out.append(
                Subnet(
                    id=str(s["id"]),
                    vpc_id=str(vnet.get("id") or ""),
                    availability_zone=location,
                    cidr=prefix,
                    available=max(size - RESERVED_PER_SUBNET - taken, 0),
                )
            )
    return out


def limits_from_skus(values: Iterable[Mapping[str, Any]]) -> dict[str, Limits]:
    """VM size -> limits from Resource SKUs (``resourceType: virtualMachines``, capability
    ``MaxNetworkInterfaces``); IPv4 per NIC is Azure's fixed 256."""
    out: dict[str, Limits] = {}
    for sku in values:
        if sku.get("resourceType") != "virtualMachines":
            continue
        caps = {str(c.get("name")): str(c.get("value")) for c in sku.get("capabilities") or []}
        if "MaxNetworkInterfaces" in caps:
            out[str(sku["name"])] = Limits(
                adapters=int(caps["MaxNetworkInterfaces"]),
                ipv4=INTERFACE_ADDRESS_LIMIT,
                ipv6=INTERFACE_ADDRESS_LIMIT,
            )
    return out


def new_ip_configurations(subnet_id: str, names: Iterable[str]) -> list[dict[str, Any]]:
    """IP configurations for a standalone VM's NIC (``networkInterfaces`` PUT)."""
    return [
        {
            "name": name,
            "properties": {
                "privateIPAllocationMethod": "Dynamic",
                "privateIPAddressVersion": "IPv4",
                "subnet": {"id": subnet_id},
            },
        }
        for name in names
    ]


def nic_with_more_addresses(
    nic: Mapping[str, Any], subnet_id: str, names: Iterable[str]
) -> dict[str, Any]:
    """The NIC PUT body: the NIC as read, its IP configurations plus the new ones (read-only
    fields dropped, as the SDK does when it sends a model back)."""
    props = dict(nic.get("properties") or {})
    body: dict[str, Any] = {"location": nic.get("location"), "properties": {}}
    if nic.get("tags"):
        body["tags"] = nic["tags"]
    keep = ("networkSecurityGroup", "enableAcceleratedNetworking", "enableIPForwarding")
    body["properties"] = {k: props[k] for k in keep if k in props}
    body["properties"]["ipConfigurations"] = [
        {
            "name": c["name"],
            "id": c.get("id"),
            "properties": {
                k: v
                for k, v in (c.get("properties") or {}).items()
                if k
                in (
                    "privateIPAddress",
                    "privateIPAllocationMethod",
                    "privateIPAddressVersion",
                    "subnet",
                    "primary",
                )
            },
        }
        for c in props.get("ipConfigurations") or []
    ] + new_ip_configurations(subnet_id, names)
    return body


def vmss_vm_with_more_addresses(
    vm: Mapping[str, Any], nic_name: str, subnet_id: str, names: Iterable[str]
) -> dict[str, Any]:
    """The VMSS VM PUT body: its ``networkProfileConfiguration`` with the new IP
    configurations appended to the NIC configuration named ``nic_name``. Raises KeyError
    when the VM has no such NIC configuration."""
    body = {k: v for k, v in vm.items() if k in ("location", "tags", "sku", "properties")}
    props = dict(body.get("properties") or {})
    profile = dict(props.get("networkProfileConfiguration") or {})
    configs = [dict(c) for c in profile.get("networkInterfaceConfigurations") or []]
    target = next((c for c in configs if c.get("name") == nic_name), None)
    if target is None:
        raise KeyError(nic_name)
    tprops = dict(target.get("properties") or {})
    tprops["ipConfigurations"] = list(tprops.get("ipConfigurations") or []) + [
        {
            "name": name,
            "properties": {"subnet": {"id": subnet_id}, "privateIPAddressVersion": "IPv4"},
        }
        for name in names
    ]
    target["properties"] = tprops
    profile["networkInterfaceConfigurations"] = configs
    props["networkProfileConfiguration"] = profile
    body["properties"] = props
    return body


def status_interfaces(nics: Iterable[NIC], subnets: Mapping[str, Subnet]) -> list[dict[str, Any]]:
    """``status.azure.interfaces``."""
    out = []
    for n in nics:
        subnet = subnets.get(n.subnet_id)
        out.append(
            {
                "id": n.id,
                "name": n.name,
                "mac": n.mac,
                "state": n.state,
                "addresses": [
                    {"ip": ip, "subnet": n.subnet_id, "state": "Succeeded"} for ip in n.addresses
                ],
                "security-group": n.security_group,
                "cidr": subnet.cidr if subnet else "",
                "vmss-name": n.vmss,
            }
        )
    return out
