"""The netlink adapter (pyroute2) on real namespaces: a bridge in one, veths from two others,
addresses, idempotent create/delete, and TCP across the bridge (addresses inside the test's
own namespaces only)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pylium.adapters.netlink import netns as nl
from pylium.base.errors import DatapathError

pytestmark = pytest.mark.root

PREFIX = f"pl-tnl{os.getpid() % 100000}"
NET = ipaddress.IPv4Network("192.168.199.0/24")

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 9000)); s.listen(); print("listening", flush=True); s.settimeout(20)
c, _ = s.accept(); c.sendall(c.recv(100)[::-1]); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 9000), timeout=10)
c.sendall(b"underlay"); print(c.recv(100).decode())
"""


def iface(n: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{NET[n]}/{NET.prefixlen}")


def in_ns(ns: str, code: str, *args: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", sys.executable, "-c", code, *args]


@pytest.fixture
def spaces() -> Iterator[tuple[str, str, str]]:
    names = (f"{PREFIX}-fab", f"{PREFIX}-a", f"{PREFIX}-b")
    try:
        yield names
    finally:
        for ns in names:
            nl.delete_netns(ns)
        assert not set(names) & set(nl.list_netns())


def test_fabric_with_two_nodes(spaces: tuple[str, str, str]) -> None:
    fab, a, b = spaces
    for ns in spaces:
        nl.create_netns(ns)
        nl.create_netns(ns)  # idempotent
    assert set(spaces) <= set(nl.list_netns())
    assert nl.link_index(a, "lo") is not None

    nl.add_bridge(fab, "br0")
    nl.add_bridge(fab, "br0")
    nl.add_address(fab, "br0", iface(1))
    for n, ns in enumerate((a, b), start=11):
        nl.add_veth(fab, ns[-1], ns, "eth0")
        nl.add_veth(fab, ns[-1], ns, "eth0")  # already there: nothing happens
        nl.set_master(fab, ns[-1], "br0")
        nl.add_address(ns, "eth0", iface(n))
        nl.add_address(ns, "eth0", iface(n))  # not added twice
        assert nl.addresses(ns, "eth0") == [iface(n)]
        assert NET in nl.routed_networks(ns)  # the kernel's connected route
    assert nl.addresses(fab, "br0") == [iface(1)]
    assert nl.addresses(a, "nosuch0") == []
    # Links exist only where they were created: none leaked into the root namespace.
    assert nl.link_index(fab, "a") is not None and nl.link_index(None, "a") is None
    assert nl.link_index(a, "br0") is None

    server = subprocess.Popen(
        in_ns(b, SERVER, str(iface(12).ip)), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        reply = subprocess.run(
            in_ns(a, CLIENT, str(iface(12).ip)), capture_output=True, text=True, timeout=30
        )
        assert reply.returncode == 0, reply.stderr
        assert reply.stdout.strip() == "yalrednu"
    finally:
        server.wait(timeout=30)
        server.stdout.close()  # type: ignore[union-attr]

    nl.delete_link(fab, "a")
    nl.delete_link(fab, "a")  # already gone
    assert nl.link_index(fab, "a") is None
    assert nl.link_index(a, "eth0") is None  # deleting one end removes the pair


def test_refusals_name_the_object(spaces: tuple[str, str, str]) -> None:
    fab, a, _ = spaces
    nl.create_netns(fab)
    with pytest.raises(DatapathError, match="create it from the root namespace"):
        nl.add_veth(fab, "x0", None, "x1")
    with pytest.raises(DatapathError, match=f"netns {a}"):
        nl.link_index(a, "lo")  # not created
    nl.delete_netns(a)  # deleting a namespace that does not exist is not an error
