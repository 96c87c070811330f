"""The loader around the programs: pinned maps outlive it and are reused by the next load;
tc attachment inside another network namespace, with the caller's namespace restored."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylium.adapters.bpf import tc
from pylium.adapters.bpf.objects import BpfObject, prog_test_run
from pylium.adapters.maps import ct, endpoints, ipcache
from pylium.adapters.maps.base import open_pinned
from pylium.base.errors import DatapathError

from .packets import ipv4_tcp
from .seed import EP_A, POD_A, POD_B, REMOTE_CIDR, REMOTE_ENTRY, seed

pytestmark = pytest.mark.root


def test_pinned_maps_survive_the_loader(lxc_object: Path, pin_dir: Path) -> None:
    with BpfObject(lxc_object, pin_dir) as first:
        seed(first)
        prog_test_run(first.prog_fd("cil_from_container"), ipv4_tcp(str(POD_A), str(POD_B)))
    # The loader is gone; another process would open the pins like this.
    ipc = ipcache.IPCacheMap(open_pinned(str(pin_dir / ipcache.NAME)))
    assert ipc.get(REMOTE_CIDR) == REMOTE_ENTRY
    # A new load reuses the same maps, contents included (conntrack too).
    with BpfObject(lxc_object, pin_dir) as second:
        assert endpoints.EndpointsMap(second.map_fd(endpoints.NAME)).get(POD_A) == EP_A
        conns = ct.CTMap(second.map_fd(ct.TCP_NAME)).dump()
        assert [(t.saddr, t.daddr, t.dport) for t in conns] == [(POD_A, POD_B, 80)]
        ipcache.IPCacheMap(second.map_fd(ipcache.NAME)).delete(REMOTE_CIDR)
    assert REMOTE_CIDR not in ipc.dump()
    assert ipaddress.IPv4Network(f"{POD_B}/32") in ipc.dump()


@pytest.fixture
def netns_with_device() -> Iterator[Path]:
    name = f"pyl-dp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1"],
            check=True,
        )
        yield Path("/var/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_tc_attach_and_detach_in_a_netns(lxc: BpfObject, netns_with_device: Path) -> None:
    own = os.readlink("/proc/thread-self/ns/net")
    ns = netns_with_device
    assert tc.attached("d0", netns=ns) is None  # no clsact yet
    lxc.attach("cil_from_container", "d0", netns=ns)
    lxc.attach("cil_from_container", "d0", ingress=False, netns=ns)
    lxc.attach("cil_from_container", "d0", netns=ns)  # again: replaced in place
    ingress = tc.attached("d0", netns=ns)
    assert ingress is not None and ingress == tc.attached("d0", ingress=False, netns=ns)
    shown = subprocess.run(
        ["ip", "netns", "exec", ns.name, "tc", "filter", "show", "dev", "d0", "ingress"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"id {ingress}" in shown and shown.count("direct-action") == 1
    assert os.readlink("/proc/thread-self/ns/net") == own
    with pytest.raises(DatapathError, match="d0: lookup device"):
        tc.attach("d0", lxc.prog_fd("cil_from_container"))  # not in our own namespace
    assert tc.detach("d0", netns=ns) and tc.detach("d0", ingress=False, netns=ns)
    assert tc.attached("d0", netns=ns) is None
    assert not tc.detach("d0", netns=ns)
    assert os.readlink("/proc/thread-self/ns/net") == own
