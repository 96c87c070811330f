"""L3: a pod's network plumbing, the way Cilium's CNI plugin does it: a veth whose host side
(``lxc…``) stays in the node's namespace and whose other end becomes the pod's interface with
a /32 address, a route to the node's router IP and a default route through it. The router's
neighbour entry is permanent (the host side answers for it: there is no ARP responder)."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
from dataclasses import dataclass

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from pylium.base.errors import DatapathError


@dataclass(frozen=True, slots=True)
class PodLink:
    host_ifname: str
    host_ifindex: int
    host_mac: str
    pod_mac: str


def setup_pod_interface(
    *,
    netns_path: str,
    ifname: str,
    host_ifname: str,
    address: ipaddress.IPv4Address,
    router: ipaddress.IPv4Address,
    mtu: int = 1500,
) -> PodLink:
    try:
        with IPRoute() as ipr:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                ipr.link(
                    "add", ifname=host_ifname, kind="veth", peer={"ifname": ifname, "net_ns_fd": fd}
                )
            finally:
                os.close(fd)
            index = ipr.link_lookup(ifname=host_ifname)[0]
            ipr.link("set", index=index, mtu=mtu, state="up")
            host_mac = ipr.get_links(index)[0].get("address")
        with NetNS(netns_path) as ns:
            pod_index = ns.link_lookup(ifname=ifname)[0]
            ns.link("set", index=pod_index, mtu=mtu, state="up")
            lo = ns.link_lookup(ifname="lo")
            if lo:
                ns.link("set", index=lo[0], state="up")
            ns.addr("add", index=pod_index, address=str(address), prefixlen=32)
            ns.route("add", dst=f"{router}/32", oif=pod_index, scope=253)
            ns.route("add", dst="0.0.0.0/0", gateway=str(router), oif=pod_index)
            ns.neigh("add", dst=str(router), lladdr=host_mac, ifindex=pod_index, state=0x80)
            pod_mac = ns.get_links(pod_index)[0].get("address")
    except (OSError, NetlinkError, IndexError) as err:
        with contextlib.suppress(DatapathError):
            delete_host_link(host_ifname)
        raise DatapathError(host_ifname, "set up pod interface", str(err)) from err
    return PodLink(host_ifname, index, host_mac, pod_mac)


def delete_host_link(host_ifname: str) -> bool:
    """Remove the host side (the pod side goes with it); False when already gone."""
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=host_ifname)
            if not found:
                return False
            ipr.link("del", index=found[0])
            return True
    except NetlinkError as err:
        if err.code == errno.ENODEV:
            return False
        raise DatapathError(host_ifname, "delete link", str(err)) from err


def link_info(ifname: str) -> tuple[int, str] | None:
    """(ifindex, MAC) of a device in this namespace, or None."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        return int(found[0]), str(ipr.get_links(found[0])[0].get("address"))


def write_sysctl(name: str, value: str) -> None:
    """A sysctl of this network namespace (``net.ipv4.ip_forward`` ...)."""
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        raise DatapathError(name, "write sysctl", str(err)) from err


def ensure_vxlan(name: str, port: int, mtu: int) -> int:
    """A VXLAN device in collect-metadata ("external") mode on UDP ``port`` with ``mtu`` (the
    largest inner packet it takes), up; returns its ifindex."""
    try:
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=name):
                ipr.link(
                    "add",
                    ifname=name,
                    kind="vxlan",
                    vxlan_collect_metadata=1,
                    vxlan_port=port,
                    vxlan_learning=0,
                )
            index = int(ipr.link_lookup(ifname=name)[0])
            ipr.link("set", index=index, mtu=mtu, state="up")
            return index
    except NetlinkError as err:
        raise DatapathError(name, "create vxlan device", str(err)) from err


def underlay_mtu(node_ip: ipaddress.IPv4Address, default: int = 1500) -> int:
    """The MTU of the device that holds the node's address (jumbo frames included); ``default``
    when no device holds it."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            if addr.get_attr("IFA_ADDRESS") == str(node_ip):
                return int(ipr.get_links(addr["index"])[0].get_attr("IFLA_MTU"))
    return default


def device_of(ip: ipaddress.IPv4Address) -> str | None:
    """The name of the device holding ``ip`` (the node's underlay device), or None."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            if addr.get_attr("IFA_ADDRESS") == str(ip):
                return str(ipr.get_links(addr["index"])[0].get_attr("IFLA_IFNAME"))
    return None


def set_mtu(ifname: str, mtu: int) -> None:
    try:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], mtu=mtu)
    except (NetlinkError, IndexError) as err:
        raise DatapathError(ifname, f"set mtu {mtu}", str(err)) from err


def endpoint_route(host_ifname: str, ip: ipaddress.IPv4Address, mac: str) -> None:
    """``ip/32 dev <host veth>`` and a permanent neighbour entry for the pod's MAC, so that the
    kernel can deliver routed traffic (native routing) without ARP."""
    try:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=host_ifname)[0]
            ipr.route("replace", dst=f"{ip}/32", oif=index, scope=253)
            ipr.neigh("replace", dst=str(ip), lladdr=mac, ifindex=index, state=0x80)
    except (NetlinkError, IndexError) as err:
        raise DatapathError(host_ifname, "endpoint route", str(err)) from err


def replace_route(dst: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> None:
    try:
        with IPRoute() as ipr:
            ipr.route("replace", dst=str(dst), gateway=str(gateway))
    except NetlinkError as err:
        raise DatapathError(str(dst), "route via " + str(gateway), str(err)) from err


def host_route(
    dst: ipaddress.IPv4Network, router: ipaddress.IPv4Address, device: str, mtu: int
) -> None:
    """Tunnel mode: ``dst via <router> dev <device> src <router> mtu <mtu>`` (upstream's route
    to another node's pod CIDR through cilium_host). The router IP is local, so the kernel
    treats the route as on-link; the device is NOARP (as upstream's cilium_host), so that no
    ARP for the pod's address is needed before the program on the device's egress takes the
    packet into the tunnel."""
    try:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=device)[0]
            ipr.link("set", index=index, arp=False)
            ipr.route(
                "replace",
                dst=str(dst),
                gateway=str(router),
                oif=index,
                prefsrc=str(router),
                metrics={"mtu": mtu},
            )
    except (NetlinkError, IndexError) as err:
        raise DatapathError(str(dst), f"route via {router} dev {device}", str(err)) from err


def host_routes(router: ipaddress.IPv4Address, device: str) -> set[ipaddress.IPv4Network]:
    """The routes :func:`host_route` made: ``via <router> dev <device>`` (found again after an
    agent restart, so that those of nodes removed meanwhile can be deleted)."""
    out: set[ipaddress.IPv4Network] = set()
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=device)
        if not index:
            return out
        for route in ipr.get_routes(family=2, oif=index[0]):
            if route.get_attr("RTA_GATEWAY") == str(router) and route["dst_len"] > 0:
                out.add(ipaddress.IPv4Network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}"))
    return out


def delete_route(dst: ipaddress.IPv4Network) -> None:
    with contextlib.suppress(NetlinkError), IPRoute() as ipr:
        ipr.route("del", dst=str(dst))


def on_link(ip: ipaddress.IPv4Address) -> bool:
    """Whether ``ip`` is in a subnet directly connected to this node (L2-adjacent)."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(family=2):
            net = ipaddress.IPv4Network(
                f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False
            )
            if net.prefixlen < 32 and ip in net:
                return True
    return False
