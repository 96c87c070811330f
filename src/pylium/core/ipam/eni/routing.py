"""L2: per-ENI routing for a pod with an ENI address (upstream ``pkg/datapath/linux/routing``).

A pod's traffic has to leave through the ENI its address belongs to (the VPC only accepts an
address from the interface it is assigned to). Upstream installs, per pod IP:

- an ingress rule ``to <pod IP> lookup main`` (priority 20), where the endpoint route
  (``<pod IP> dev lxc…``, ``enable-endpoint-routes``) delivers it;
- egress rules ``from <pod IP> [to <VPC CIDR>] lookup <table>`` (priority 110): one per VPC
  CIDR when the pod's traffic is masqueraded beyond the VPC, a single catch-all otherwise;
- in the ENI's table (``10 + the ENI's device index``): ``<subnet router> dev <ENI device>
  scope link`` and ``default via <subnet router> dev <ENI device>``, the subnet router being
  the subnet's first address + 1, as in the VPC.

Pure: the plan is data; the netlink adapter applies it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RULE_PRIORITY_INGRESS = 20
"""``linux_defaults.RulePriorityIngress``."""
RULE_PRIORITY_EGRESS = 110
"""``linux_defaults.RulePriorityEgress`` (v1.x ``RulePriorityEgressv2`` is 111)."""
ROUTE_TABLE_INTERFACES_OFFSET = 10
"""``linux_defaults.RouteTableInterfacesOffset``: an ENI's table is this + its index."""
MAIN_TABLE = 254


@dataclass(frozen=True, slots=True)
class Rule:
    priority: int
    table: int
    src: str = ""
    """``from`` prefix (empty: any)."""
    dst: str = ""
    """``to`` prefix (empty: any)."""


@dataclass(frozen=True, slots=True)
class Route:
    table: int
    dst: str
    """A prefix, or ``default``."""
    device: str
    gateway: str = ""
    scope_link: bool = False


@dataclass(frozen=True, slots=True)
class PodRouting:
    rules: tuple[Rule, ...]
    routes: tuple[Route, ...]


def table_of(eni_number: int) -> int:
    """The routing table of the ENI attached at device index ``eni_number``."""
    return ROUTE_TABLE_INTERFACES_OFFSET + eni_number


def subnet_router(subnet_cidr: str) -> str:
    """The VPC router of a subnet: its network address + 1 (10.0.1.0/24 -> 10.0.1.1)."""
    net = ipaddress.ip_network(subnet_cidr, strict=False)
    return str(net.network_address + 1)


def plan_pod(
    *,
    pod_ip: str,
    eni_number: int,
    device: str,
    subnet_cidr: str,
    vpc_cidrs: Sequence[str],
    masquerade: bool,
) -> PodRouting:
    """Rules and routes that send ``pod_ip``'s traffic out of its ENI's ``device``.

    With ``masquerade`` only the VPC's CIDRs go through the ENI's table (the rest is
    masqueraded to the node and follows the main table); without it, everything does."""
    ip = ipaddress.ip_address(pod_ip)
    host = f"{ip}/{ip.max_prefixlen}"
    table = table_of(eni_number)
    rules = [Rule(RULE_PRIORITY_INGRESS, MAIN_TABLE, dst=host)]
    if masquerade:
        rules += [
            Rule(RULE_PRIORITY_EGRESS, table, src=host, dst=str(ipaddress.ip_network(c)))
            for c in vpc_cidrs
        ]
    else:
        rules.append(Rule(RULE_PRIORITY_EGRESS, table, src=host))
    router = subnet_router(subnet_cidr)
    routes = (
        Route(table, f"{router}/32", device, scope_link=True),
        Route(table, "default", device, gateway=router),
    )
    return PodRouting(tuple(rules), routes)


def stale(
    installed: Sequence[Rule], wanted: Sequence[PodRouting], *, pod_prefixes: Sequence[str]
) -> list[Rule]:
    """Installed pod rules (priorities 20 and 110 naming one of ``pod_prefixes``) that no
    wanted plan holds any more: what to delete after a pod went away."""
    keep = {r for plan in wanted for r in plan.rules}
    ours = {RULE_PRIORITY_INGRESS, RULE_PRIORITY_EGRESS}
    prefixes = set(pod_prefixes)
    return [
        r
        for r in installed
        if r.priority in ours and (r.src in prefixes or r.dst in prefixes) and r not in keep
    ]


@dataclass(frozen=True, slots=True)
class PodENI:
    """What routing a pod IP needs to know of the ENI holding it (CiliumNode
    ``status.eni.enis[<id>]``, found through ``spec.ipam.pool[<ip>].resource``)."""

    id: str
    number: int
    """The ENI's device index: its routing table is ``10 + number``."""
    mac: str
    """How the agent finds the ENI's device on the node (upstream looks it up by MAC)."""
    subnet_cidr: str
    vpc_cidrs: tuple[str, ...]
    """The VPC's primary CIDR first."""


def pod_eni(cilium_node: Mapping[str, Any], ip: str) -> PodENI | None:
    """The ENI of ``ip`` as the operator published it, or None (not in the pool, or the ENI's
    status not written yet)."""
    spec = cilium_node.get("spec") or {}
    entry = ((spec.get("ipam") or {}).get("pool") or {}).get(ip) or {}
    eni_id = str(entry.get("resource", ""))
    enis = ((cilium_node.get("status") or {}).get("eni") or {}).get("enis") or {}
    eni = enis.get(eni_id) if eni_id else None
    if not eni or not eni.get("mac") or not (eni.get("subnet") or {}).get("cidr"):
        return None
    vpc = eni.get("vpc") or {}
    cidrs = [str(vpc["primary-cidr"])] if vpc.get("primary-cidr") else []
    cidrs += [str(c) for c in vpc.get("cidrs") or [] if str(c) not in cidrs]
    return PodENI(
        id=eni_id,
        number=int(eni.get("number", 0)),
        mac=str(eni["mac"]).lower(),
        subnet_cidr=str(eni["subnet"]["cidr"]),
        vpc_cidrs=tuple(cidrs),
    )


def egress_cidrs(eni: PodENI, native_routing_cidr: str = "") -> list[str]:
    """The destinations a masqueraded pod reaches through its ENI (upstream's IPAM result
    ``cidrs``): the VPC's CIDRs, and ``ipv4-native-routing-cidr`` when set."""
    out = list(eni.vpc_cidrs)
    if native_routing_cidr and native_routing_cidr not in out:
        out.append(native_routing_cidr)
    return out
