"""L3: network namespaces and the links between them (pyroute2), for the lab and the agent.

Every function is idempotent where it can be (creating what exists or deleting what is gone is
not an error), so that building and tearing down can be retried after a crash. ``netns=None``
means the namespace of the calling process.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute, NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError

from pylium.base.errors import DatapathError


@contextmanager
def _ipr(ns: str | None) -> Iterator[Any]:
    # pyroute2 would create a missing namespace (O_CREAT), silently resurrecting one that a
    # crash or a typo made disappear; with flags=0 it fails but leaks its event loop, so the
    # namespace is looked up first.
    if ns and ns not in netns.listnetns():
        raise DatapathError(f"netns {ns}", "open", "no such network namespace")
    try:
        handle = NetNS(ns, flags=0) if ns else IPRoute()
    except (OSError, NetlinkError) as err:
        raise DatapathError(f"netns {ns}", "open", str(err)) from err
    try:
        yield handle
    finally:
        handle.close()


def list_netns() -> list[str]:
    return sorted(netns.listnetns())


def create_netns(name: str) -> None:
    if name not in netns.listnetns():
        try:
            netns.create(name)
        except OSError as err:
            raise DatapathError(f"netns {name}", "create", str(err)) from err
    with _ipr(name) as ipr:
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")


def delete_netns(name: str) -> None:
    if name in netns.listnetns():
        try:
            netns.remove(name)
        except OSError as err:
            raise DatapathError(f"netns {name}", "delete", str(err)) from err


def link_index(ns: str | None, ifname: str) -> int | None:
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        return int(found[0]) if found else None


def add_bridge(ns: str | None, name: str, mtu: int = 1500) -> None:
    with _ipr(ns) as ipr:
        if not ipr.link_lookup(ifname=name):
            ipr.link("add", ifname=name, kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=mtu, state="up")


def add_veth(ns: str | None, name: str, peer_ns: str | None, peer: str, mtu: int = 1500) -> None:
    """A veth pair ``name`` (in ``ns``) <-> ``peer`` (in ``peer_ns``), both up."""
    if ns is not None and peer_ns is None:
        raise DatapathError(f"link {name}", "add veth", "create it from the root namespace instead")
    if link_index(ns, name) is not None:
        return
    with _ipr(ns) as ipr:
        spec: dict[str, Any] = {"ifname": peer}
        if peer_ns != ns and peer_ns is not None:
            spec["net_ns_fd"] = peer_ns
        try:
            ipr.link("add", ifname=name, kind="veth", peer=spec)
        except NetlinkError as err:
            raise DatapathError(f"link {name}", "add veth", str(err)) from err
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], mtu=mtu, state="up")
    with _ipr(peer_ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], mtu=mtu, state="up")


def set_master(ns: str | None, ifname: str, bridge: str) -> None:
    with _ipr(ns) as ipr:
        ipr.link(
            "set", index=ipr.link_lookup(ifname=ifname)[0], master=ipr.link_lookup(ifname=bridge)[0]
        )


def add_address(ns: str | None, ifname: str, address: ipaddress.IPv4Interface) -> None:
    with _ipr(ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        existing = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index)}
        if (str(address.ip), address.network.prefixlen) not in existing:
            ipr.addr(
                "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )


def delete_link(ns: str | None, ifname: str) -> None:
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            ipr.link("del", index=found[0])


def addresses(ns: str | None, ifname: str) -> list[ipaddress.IPv4Interface]:
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return []
        return [
            ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            for a in ipr.get_addr(index=found[0], family=2)
        ]


def routed_networks(ns: str | None = None) -> list[ipaddress.IPv4Network]:
    """Destinations of the IPv4 routes in ``ns`` (to choose subnets that collide with none)."""
    out = []
    with _ipr(ns) as ipr:
        for route in ipr.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if dst:
                out.append(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
    return out


def replace_route(
    ns: str | None, dst: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address
) -> None:
    """``dst via gateway`` in ``ns`` (``0.0.0.0/0`` for the default route)."""
    with _ipr(ns) as ipr:
        try:
            ipr.route("replace", dst=str(dst), gateway=str(gateway))
        except NetlinkError as err:
            raise DatapathError(str(dst), f"route via {gateway} in {ns}", str(err)) from err


def delete_route(ns: str | None, dst: ipaddress.IPv4Network) -> None:
    with _ipr(ns) as ipr:
        try:
            ipr.route("del", dst=str(dst))
        except NetlinkError as err:
            if err.code != 3:  # ESRCH: already gone
                raise DatapathError(str(dst), f"delete route in {ns}", str(err)) from err


def gateway_routes(ns: str | None) -> dict[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """The routes of ``ns`` that go via a gateway: destination -> gateway."""
    out = {}
    with _ipr(ns) as ipr:
        for route in ipr.get_routes(family=2):
            gateway = route.get_attr("RTA_GATEWAY")
            if gateway:
                dst = route.get_attr("RTA_DST") or "0.0.0.0"
                out[ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False)] = (
                    ipaddress.IPv4Address(gateway)
                )
    return out


def set_sysctl(ns: str, name: str, value: str) -> None:
    """A sysctl inside ``ns`` (``net.*`` sysctls are per namespace)."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", f"{name}={value}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise DatapathError(f"netns {ns}", f"sysctl {name}={value}", done.stderr.strip())


def set_mac(ns: str | None, ifname: str, mac: str) -> None:
    """Give ``ifname`` the hardware address ``mac`` (a lab ENI's, as EC2 reports it)."""
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise DatapathError(ifname, "set address", f"no such device in {ns}")
        up = bool(ipr.get_links(found[0])[0]["flags"] & 1)  # IFF_UP
        try:
            # Not every driver changes the address of a running device: down, set, up.
            ipr.link("set", index=found[0], state="down")
            ipr.link("set", index=found[0], address=mac)
            if up:
                ipr.link("set", index=found[0], state="up")
        except NetlinkError as err:
            raise DatapathError(ifname, f"set address {mac}", str(err)) from err


def link_macs(ns: str | None) -> dict[str, str]:
    """Every device of ``ns``: name -> hardware address (lower case)."""
    with _ipr(ns) as ipr:
        return {
            str(link.get_attr("IFLA_IFNAME")): str(link.get_attr("IFLA_ADDRESS") or "").lower()
            for link in ipr.get_links()
        }


NUD_PERMANENT = 0x80


def permanent_neighbors(ns: str | None, ifname: str) -> dict[ipaddress.IPv4Address, str]:
    """The static (permanent) IPv4 neighbour entries on ``ifname``: IP -> MAC."""
    out = {}
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return {}
        for msg in ipr.get_neighbours(family=2, ifindex=found[0]):
            if msg["state"] & NUD_PERMANENT and msg.get_attr("NDA_LLADDR"):
                ip = ipaddress.IPv4Address(msg.get_attr("NDA_DST"))
                out[ip] = str(msg.get_attr("NDA_LLADDR")).lower()
    return out


def replace_neighbor(ns: str | None, ifname: str, ip: ipaddress.IPv4Address, mac: str) -> None:
    """A permanent neighbour entry ``ip lladdr mac dev ifname``."""
    with _ipr(ns) as ipr:
        try:
            ipr.neigh(
                "replace",
                dst=str(ip),
                lladdr=mac,
                ifindex=ipr.link_lookup(ifname=ifname)[0],
                state=NUD_PERMANENT,
            )
        except (NetlinkError, IndexError) as err:
            raise DatapathError(str(ip), f"neighbour {mac} on {ifname} in {ns}", str(err)) from err


def delete_neighbor(ns: str | None, ifname: str, ip: ipaddress.IPv4Address) -> None:
    with _ipr(ns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        try:
            ipr.neigh("del", dst=str(ip), ifindex=found[0])
        except NetlinkError as err:
            if err.code != 2:  # ENOENT: already gone
                raise DatapathError(str(ip), f"delete neighbour on {ifname}", str(err)) from err
