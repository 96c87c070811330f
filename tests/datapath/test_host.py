"""bpf_host's cil_from_host (cilium_host's tc egress) on crafted packets (BPF_PROG_TEST_RUN):
the host's packets to pods on other nodes go into the tunnel with the HOST identity, others
pass to the stack; and bpf_overlay's side of it: a tunnelled HOST identity is judged as
remote-node (6), and replies to this node's router IP go to the stack as addressed to it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    BpfObject,
    prog_test_run,
)
from pylium.adapters.maps import config, events, ipcache, policy
from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey
from pylium.core.policy.peers import Direction

from .packets import ethernet, ipv4_tcp
from .seed import EP_B, POD_B, REMOTE, REMOTE_NODE, seed

pytestmark = pytest.mark.root

FROM_HOST = "cil_from_host"
FROM_OVERLAY = "cil_from_overlay"
ROUTER = ipaddress.IPv4Address("10.0.1.1")
REMOTE_ROUTER = ipaddress.IPv4Address("10.0.2.1")
HOST, WORLD, REMOTE_NODE_ID = 1, 2, 6


@pytest.fixture
def host(lxc: BpfObject, pin_dir: Path) -> Iterator[BpfObject]:
    """bpf_host loaded after bpf_lxc with the same pins (shared maps, as on a node)."""
    seed(lxc)
    ipc = ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME))
    ipc.upsert(ipaddress.IPv4Network(f"{ROUTER}/32"), ipcache.Entry(identity=HOST))
    ipc.upsert(
        ipaddress.IPv4Network(f"{REMOTE_ROUTER}/32"),
        ipcache.Entry(identity=REMOTE_NODE_ID, tunnel_endpoint=REMOTE_NODE),
    )
    obj = BpfObject(build("bpf_host"), pin_dir).load()
    yield obj
    obj.close()


@pytest.fixture
def reader(lxc: BpfObject) -> Iterator[events.EventReader]:
    r = events.EventReader(lxc.map_fd(events.NAME))
    yield r
    r.close()


def test_host_to_remote_pod_goes_into_the_tunnel_as_host(
    lxc: BpfObject, host: BpfObject, reader: events.EventReader
) -> None:
    prog = host.prog_fd(FROM_HOST)
    packet = ipv4_tcp(str(ROUTER), str(REMOTE), dport=8080)
    verdict, _ = prog_test_run(prog, packet)
    assert verdict == TC_ACT_SHOT  # no tunnel device configured (native routing)
    (dropped,) = reader.poll()
    assert (dropped.type, dropped.reason) == (events.TYPE_DROP, 160)

    config.ConfigMap(lxc.map_fd(config.NAME)).set(tunnel_ifindex=1)
    verdict, out = prog_test_run(prog, packet)
    assert verdict == TC_ACT_REDIRECT
    assert out == packet  # the inner frame goes as it is
    (trace,) = reader.poll()
    assert (trace.type, trace.obs_point) == (events.TYPE_TRACE, events.TRACE_TO_OVERLAY)
    assert (trace.src_identity, trace.dst_identity) == (HOST, REMOTE_NODE_ID)


def test_host_traffic_without_tunnel_endpoint_passes(
    host: BpfObject, reader: events.EventReader
) -> None:
    prog = host.prog_fd(FROM_HOST)
    for dst in ("8.8.8.8", str(POD_B)):  # world; a local pod (no tunnel endpoint)
        verdict, out = prog_test_run(prog, ipv4_tcp(str(ROUTER), dst))
        assert (verdict, out) == (TC_ACT_OK, ipv4_tcp(str(ROUTER), dst))
    traces = reader.poll()
    assert [(t.obs_point, t.dst_identity) for t in traces] == [
        (events.TRACE_TO_STACK, WORLD),
        (events.TRACE_TO_STACK, EP_B.identity),
    ]
    assert prog_test_run(prog, ethernet(0x0806))[0] == TC_ACT_OK  # ARP


def _ingress(identity: int) -> MapState:
    return MapState(
        {PolicyKey(Direction.INGRESS, identity, 6, 8080, 16): MapEntry(False)},
    )


@pytest.mark.parametrize(
    ("allowed", "verdict"), [(REMOTE_NODE_ID, TC_ACT_REDIRECT), (HOST, TC_ACT_SHOT)]
)
def test_overlay_judges_a_tunnelled_host_as_remote_node(
    lxc: BpfObject, overlay: BpfObject, host: BpfObject, pin_dir: Path, allowed: int, verdict: int
) -> None:
    maps = policy.PolicyMaps(lxc.map_fd(policy.NAME), pin_dir)
    maps.write(EP_B.endpoint_id, _ingress(allowed))
    packet = ipv4_tcp(str(REMOTE_ROUTER), str(POD_B), dport=8080)
    assert prog_test_run(overlay.prog_fd(FROM_OVERLAY), packet, mark=HOST)[0] == verdict


def test_overlay_hands_replies_to_the_router_ip_to_the_stack(
    overlay: BpfObject, host: BpfObject, reader: events.EventReader
) -> None:
    reply = ipv4_tcp(str(REMOTE), str(ROUTER), sport=8080, dport=40000, flags=0x12)
    verdict, out = prog_test_run(overlay.prog_fd(FROM_OVERLAY), reply, mark=3003)
    assert (verdict, out) == (TC_ACT_OK, reply)
    (trace,) = reader.poll()
    assert (trace.obs_point, trace.src_identity, trace.dst_identity) == (
        events.TRACE_TO_STACK,
        3003,
        HOST,
    )
