"""L3: per-ENI routing tables and pod rules in the kernel (pyroute2), from the core's plan.

Applies :class:`pylium.core.ipam.eni.routing.PodRouting` (``to <pod> lookup main``,
``from <pod> [to <VPC CIDR>] lookup 10+<ENI index>``, and in that table the subnet router
as a link route plus the default route via it), removes it again, and lists the rules pylium
owns. Idempotent: applying twice or removing what is gone is not an error.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from pylium.adapters.netlink.netns import _ipr
from pylium.base.errors import DatapathError
from pylium.core.ipam.eni.routing import (
    RULE_PRIORITY_EGRESS,
    RULE_PRIORITY_INGRESS,
    PodRouting,
    Rule,
)

AF_INET = 2
RT_SCOPE_LINK = 253
_EEXIST = 17
_ENOENT = 2
_ESRCH = 3


def _prefix_args(prefix: str, which: str) -> dict[str, Any]:
    if not prefix:
        return {}
    net = ipaddress.ip_network(prefix)
    return {which: str(net.network_address), f"{which}_len": net.prefixlen}


def _rule_args(rule: Rule) -> dict[str, Any]:
    return {
        "family": AF_INET,
        "priority": rule.priority,
        "table": rule.table,
        **_prefix_args(rule.src, "src"),
        **_prefix_args(rule.dst, "dst"),
    }


def rules(ns: str | None) -> list[Rule]:
    """The IPv4 rules at pylium's pod priorities (ingress 20, egress 110)."""
    out = []
    with _ipr(ns) as ipr:
        for msg in ipr.get_rules(family=AF_INET):
            priority = msg.get_attr("FRA_PRIORITY") or 0
            if priority not in (RULE_PRIORITY_INGRESS, RULE_PRIORITY_EGRESS):
                continue
            src = msg.get_attr("FRA_SRC")
            dst = msg.get_attr("FRA_DST")
            out.append(
                Rule(
                    priority=priority,
                    table=msg.get_attr("FRA_TABLE") or msg["table"],
                    src=f"{src}/{msg['src_len']}" if src else "",
                    dst=f"{dst}/{msg['dst_len']}" if dst else "",
                )
            )
    return out


def apply(ns: str | None, plan: PodRouting) -> None:
    """Install the routes (replace) and the rules (added unless present)."""
    present = set(rules(ns))
    with _ipr(ns) as ipr:
        for route in plan.routes:
            found = ipr.link_lookup(ifname=route.device)
            if not found:
                raise DatapathError(route.device, "ENI route", f"no such device in {ns}")
            args: dict[str, Any] = {
                "table": route.table,
                "dst": "0.0.0.0/0" if route.dst == "default" else route.dst,
                "oif": found[0],
            }
            if route.gateway:
                args["gateway"] = route.gateway
            if route.scope_link:
                args["scope"] = RT_SCOPE_LINK
            try:
                ipr.route("replace", **args)
            except NetlinkError as err:
                raise DatapathError(route.dst, f"route in table {route.table}", str(err)) from err
        for rule in plan.rules:
            if rule in present:
                continue
            try:
                ipr.rule("add", **_rule_args(rule))
            except NetlinkError as err:
                if err.code != _EEXIST:
                    raise DatapathError(
                        rule.src or rule.dst, f"rule lookup {rule.table}", str(err)
                    ) from err


def remove(ns: str | None, stale: list[Rule]) -> None:
    """Delete pod rules (the ENI tables stay: other pods share them)."""
    with _ipr(ns) as ipr:
        for rule in stale:
            try:
                ipr.rule("del", **_rule_args(rule))
            except NetlinkError as err:
                if err.code not in (_ENOENT, _ESRCH):
                    raise DatapathError(
                        rule.src or rule.dst, f"delete rule lookup {rule.table}", str(err)
                    ) from err


def device_by_mac(ns: str | None, mac: str) -> str | None:
    """The name of the device with hardware address ``mac`` (an ENI's), or None."""
    wanted = mac.lower()
    with _ipr(ns) as ipr:
        for link in ipr.get_links():
            if str(link.get_attr("IFLA_ADDRESS") or "").lower() == wanted:
                return str(link.get_attr("IFLA_IFNAME"))
    return None


def set_up(ns: str | None, device: str) -> None:
    """Bring an ENI's device up (a freshly attached ENI may be down)."""
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=device)
        if not found:
            raise DatapathError(device, "set up", f"no such device in {ns or 'this namespace'}")
        ipr.link("set", index=found[0], state="up")
