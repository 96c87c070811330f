"""Policy enforcement in the datapath (BPF_PROG_TEST_RUN): per-endpoint policy maps written
through the Python wrapper from core map states, checked by from-container (egress of the
sender, ingress of a local receiver), from-overlay (identity from the tunnel key) and
to-container; drop reasons 133/181 in metrics and events, policy-verdict events, conntrack
letting replies through, audit mode, unenforced directions; and a property: the datapath's
verdict equals core MapState.lookup for random map states."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylium.adapters.bpf.objects import (
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    BpfObject,
    prog_test_run,
)
from pylium.adapters.maps import config, events, ipcache, metrics, policy
from pylium.base.errors import DatapathError
from pylium.core.policy.diff import diff
from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey, l4_keys
from pylium.core.policy.peers import Direction, L4Match

from .packets import ACK, SYN, ethernet, ipv4_icmp, ipv4_icmp_error, ipv4_tcp, ipv4_udp
from .seed import EP_A, EP_B, POD_A, POD_B, REMOTE, seed

pytestmark = pytest.mark.root

FROM_CONTAINER = "cil_from_container"
TO_CONTAINER = "cil_to_container"
FROM_OVERLAY = "cil_from_overlay"
INGRESS, EGRESS = Direction.INGRESS, Direction.EGRESS
DIR_INGRESS, DIR_EGRESS = 1, 2  # metrics and events
TCP, UDP, ICMP = 6, 17, 1
A_ID, B_ID = EP_A.identity, EP_B.identity  # 1001, 1002
REMOTE_POD_ID = 3003
WORLD = "8.8.8.8"

ALLOW, DENY = MapEntry(False), MapEntry(True)


def key(direction: Direction, identity: int, proto: int = 0, port: int = 0) -> PolicyKey:
    """An exact port (or any L4 when proto is 0)."""
    return PolicyKey(direction, identity, proto, port, 16 if proto else 0)


def allow_any(direction: Direction) -> dict[PolicyKey, MapEntry]:
    """What the core writes for an unenforced direction."""
    return {key(direction, 0): ALLOW}


@pytest.fixture
def maps(lxc: BpfObject, pin_dir: Path) -> policy.PolicyMaps:
    seed(lxc)
    return policy.PolicyMaps(lxc.map_fd(policy.NAME), pin_dir)


@pytest.fixture
def reader(lxc: BpfObject) -> Iterator[events.EventReader]:
    r = events.EventReader(lxc.map_fd(events.NAME))
    yield r
    r.close()


def run(obj: BpfObject, packet: bytes, program: str = FROM_CONTAINER, mark: int = 0) -> int:
    verdict, _ = prog_test_run(obj.prog_fd(program), packet, mark=mark)
    return verdict


def of_type(evs: list[events.FlowEvent], t: int) -> list[events.FlowEvent]:
    return [e for e in evs if e.type == t]


def test_no_policy_map_means_no_enforcement(lxc: BpfObject, maps: policy.PolicyMaps) -> None:
    assert maps.endpoints() == []
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=1234)) == TC_ACT_REDIRECT
    assert run(lxc, ipv4_tcp(str(POD_A), WORLD, dport=1234)) == TC_ACT_OK


def test_allowed_by_identity_and_port(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    maps.write(EP_B.endpoint_id, MapState({key(INGRESS, A_ID, TCP, 8080): ALLOW}))
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080)) == TC_ACT_REDIRECT
    (verdict,) = of_type(reader.poll(), events.TYPE_POLICY_VERDICT)
    assert (verdict.reason, verdict.obs_point, verdict.direction, verdict.audited) == (
        0,
        events.MATCH_L3_L4,
        DIR_INGRESS,
        False,
    )
    assert (verdict.src_identity, verdict.dst_identity, verdict.dport) == (A_ID, B_ID, 8080)

    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8081)) == TC_ACT_SHOT
    assert run(lxc, ipv4_udp(str(POD_A), str(POD_B), dport=8080)) == TC_ACT_SHOT
    # another identity on the allowed port: the remote CIDR's (6), through to-container
    assert run(lxc, ipv4_tcp(str(REMOTE), str(POD_B), dport=8080), TO_CONTAINER) == TC_ACT_SHOT


def test_allowed_by_wildcard_identity(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    maps.write(EP_A.endpoint_id, MapState({key(EGRESS, 0, TCP, 443): ALLOW, **allow_any(INGRESS)}))
    assert run(lxc, ipv4_tcp(str(POD_A), WORLD, dport=443)) == TC_ACT_OK
    assert run(lxc, ipv4_tcp(str(POD_A), "1.1.1.1", dport=443)) == TC_ACT_OK
    assert run(lxc, ipv4_tcp(str(POD_A), WORLD, dport=80)) == TC_ACT_SHOT
    verdicts = of_type(reader.poll(), events.TYPE_POLICY_VERDICT)
    assert [(v.reason, v.obs_point, v.direction) for v in verdicts] == [
        (0, events.MATCH_L4_ONLY, DIR_EGRESS),
        (0, events.MATCH_L4_ONLY, DIR_EGRESS),
        (133, events.MATCH_NONE, DIR_EGRESS),
    ]


def test_port_ranges_as_prefixes(lxc: BpfObject, maps: policy.PolicyMaps) -> None:
    keys = list(l4_keys(INGRESS, A_ID, L4Match(TCP, 8000, 8100)))
    assert len(keys) > 1  # not one aligned block: several prefixes
    maps.write(EP_B.endpoint_id, MapState(dict.fromkeys(keys, ALLOW)))
    for port, expected in [
        (7999, TC_ACT_SHOT),
        (8000, TC_ACT_REDIRECT),
        (8063, TC_ACT_REDIRECT),
        (8064, TC_ACT_REDIRECT),
        (8100, TC_ACT_REDIRECT),
        (8101, TC_ACT_SHOT),
        (9000, TC_ACT_SHOT),
    ]:
        assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=port)) == expected, port


def test_deny_beats_allow_with_reason_181(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    # Allow TCP from anyone, deny TCP/8080 from A: the deny is more specific here, and the
    # core (deny_preferred) also guarantees it when the allow is the longer prefix.
    maps.write(
        EP_B.endpoint_id,
        MapState(
            {
                PolicyKey(INGRESS, 0, TCP, 0, 0): ALLOW,
                key(INGRESS, A_ID, TCP, 8080): DENY,
                # identity-specific deny vs a longer wildcard allow, as deny_preferred twins it
                key(INGRESS, 0, TCP, 9090): ALLOW,
                PolicyKey(INGRESS, A_ID, TCP, 9090, 16): DENY,
            }
        ),
    )
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=80)) == TC_ACT_REDIRECT
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080)) == TC_ACT_SHOT
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=9090)) == TC_ACT_SHOT
    evs = reader.poll()
    drops = of_type(evs, events.TYPE_DROP)
    assert [(d.reason, d.direction, d.dport) for d in drops] == [
        (181, DIR_INGRESS, 8080),
        (181, DIR_INGRESS, 9090),
    ]
    verdicts = of_type(evs, events.TYPE_POLICY_VERDICT)
    assert [(v.reason, v.obs_point) for v in verdicts] == [
        (0, events.MATCH_PROTO_ONLY),
        (181, events.MATCH_L3_L4),
        (181, events.MATCH_L3_L4),
    ]
    totals = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert totals[(181, DIR_INGRESS)].count == 2


def test_no_match_is_default_deny_133(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    maps.write(EP_A.endpoint_id, MapState(allow_any(INGRESS)))  # egress enforced, nothing allowed
    packet = ipv4_tcp(str(POD_A), WORLD, dport=443)
    assert run(lxc, packet) == TC_ACT_SHOT
    evs = reader.poll()
    (drop,) = of_type(evs, events.TYPE_DROP)
    assert (drop.reason, drop.direction, drop.src_identity, drop.dst_identity) == (
        133,
        DIR_EGRESS,
        A_ID,
        2,
    )
    assert (drop.saddr, drop.daddr, drop.dport, drop.source) == (
        POD_A,
        ipaddress.IPv4Address(WORLD),
        443,
        EP_A.endpoint_id,
    )
    (verdict,) = of_type(evs, events.TYPE_POLICY_VERDICT)
    assert (verdict.reason, verdict.obs_point) == (133, events.MATCH_NONE)
    totals = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert totals == {(133, DIR_EGRESS): metrics.Counter(1, len(packet))}
    # a denied connection leaves nothing in conntrack: the next packet is denied again
    assert run(lxc, packet) == TC_ACT_SHOT


def test_reply_of_an_allowed_connection_passes(lxc: BpfObject, maps: policy.PolicyMaps) -> None:
    # A may send anywhere and accepts nothing; B accepts A on 8080 and may send nothing.
    maps.write(EP_A.endpoint_id, MapState(allow_any(EGRESS)))
    maps.write(EP_B.endpoint_id, MapState({key(INGRESS, A_ID, TCP, 8080): ALLOW}))
    syn = ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=SYN)
    assert run(lxc, syn) == TC_ACT_REDIRECT
    reply = ipv4_tcp(str(POD_B), str(POD_A), sport=8080, dport=40000, flags=SYN | ACK)
    assert run(lxc, reply) == TC_ACT_REDIRECT  # B's egress and A's ingress would deny it
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=ACK)) == TC_ACT_REDIRECT
    # a connection B opens itself is checked (B's egress first)
    assert run(lxc, ipv4_tcp(str(POD_B), str(POD_A), sport=50000, dport=8080)) == TC_ACT_SHOT


def test_established_flow_stops_when_policy_revokes_it(
    lxc: BpfObject, maps: policy.PolicyMaps
) -> None:
    before = MapState({key(INGRESS, A_ID, TCP, 8080): ALLOW})
    maps.write(EP_B.endpoint_id, before)
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=SYN)) == TC_ACT_REDIRECT
    after = MapState({key(INGRESS, A_ID, TCP, 9090): ALLOW})
    maps.apply(EP_B.endpoint_id, diff(before, after))
    assert maps.read(EP_B.endpoint_id) == after
    # established (not a reply): checked again, and now denied
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080, flags=ACK)) == TC_ACT_SHOT


def test_audit_mode_passes_and_reports(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    cfg = config.ConfigMap(lxc.map_fd(config.NAME))
    cfg.set(tunnel_ifindex=7)
    cfg.set_policy_audit_mode(True)
    assert cfg.get() == (7, config.FLAG_POLICY_AUDIT_MODE)
    maps.write(
        EP_B.endpoint_id,
        MapState({key(INGRESS, A_ID, TCP, 8080): ALLOW, key(INGRESS, A_ID, TCP, 22): DENY}),
    )
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=8080)) == TC_ACT_REDIRECT
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=9999)) == TC_ACT_REDIRECT
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=22)) == TC_ACT_REDIRECT
    evs = reader.poll()
    assert of_type(evs, events.TYPE_DROP) == []
    verdicts = of_type(evs, events.TYPE_POLICY_VERDICT)
    assert [(v.reason, v.audited) for v in verdicts] == [(0, False), (133, True), (181, True)]
    totals = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert set(totals) == {(0, DIR_EGRESS)}

    cfg.set_policy_audit_mode(False)
    assert cfg.get() == (7, 0)
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), sport=40001, dport=9999)) == TC_ACT_SHOT


def test_unenforced_direction_passes_silently(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    # B: ingress unenforced (allow-any), egress enforced with nothing allowed
    maps.write(EP_B.endpoint_id, MapState(allow_any(INGRESS)))
    assert run(lxc, ipv4_tcp(str(POD_A), str(POD_B), dport=5555)) == TC_ACT_REDIRECT
    assert run(lxc, ipv4_udp(str(POD_A), str(POD_B), dport=5555)) == TC_ACT_REDIRECT
    assert of_type(reader.poll(), events.TYPE_POLICY_VERDICT) == []
    assert run(lxc, ipv4_tcp(str(POD_B), WORLD, dport=80)) == TC_ACT_SHOT


def test_icmp_type_is_the_port(lxc: BpfObject, maps: policy.PolicyMaps) -> None:
    maps.write(EP_B.endpoint_id, MapState({key(INGRESS, 0, ICMP, 8): ALLOW}))
    assert run(lxc, ipv4_icmp(str(POD_A), str(POD_B), icmp_type=8)) == TC_ACT_REDIRECT
    assert run(lxc, ipv4_icmp(str(POD_A), str(POD_B), icmp_type=13)) == TC_ACT_SHOT
    # the echo reply is a conntrack reply: B's egress (enforced, empty) is not consulted
    assert run(lxc, ipv4_icmp(str(POD_B), str(POD_A), icmp_type=0)) == TC_ACT_REDIRECT


def test_icmp_errors_about_a_connection_are_related(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    # A may send anything and accepts nothing; B accepts A's UDP/53 and may send nothing.
    maps.write(EP_A.endpoint_id, MapState(allow_any(EGRESS)))
    maps.write(EP_B.endpoint_id, MapState({key(INGRESS, A_ID, UDP, 53): ALLOW}))
    to_world = ipv4_udp(str(POD_A), WORLD, dport=53)
    assert run(lxc, to_world) == TC_ACT_OK
    # a router on the way: "fragmentation needed" quoting A's packet, routed to A's veth
    too_big = ipv4_icmp_error("9.9.9.9", str(POD_A), to_world[14:])
    assert run(lxc, too_big, TO_CONTAINER) == TC_ACT_OK
    # quoting a packet of no connection: an ICMP flow of its own, denied by A's ingress
    stray = ipv4_icmp_error("9.9.9.9", str(POD_A), ipv4_udp(str(POD_A), WORLD, sport=1)[14:])
    assert run(lxc, stray, TO_CONTAINER) == TC_ACT_SHOT
    # B's "port unreachable" for A's datagram leaves through B's enforced egress
    to_b = ipv4_udp(str(POD_A), str(POD_B), dport=53)
    assert run(lxc, to_b) == TC_ACT_REDIRECT
    unreachable = ipv4_icmp_error(str(POD_B), str(POD_A), to_b[14:], code=3)
    assert run(lxc, unreachable) == TC_ACT_REDIRECT
    traces = of_type(reader.poll(), events.TYPE_TRACE)
    assert [t.reason for t in traces if t.proto == ICMP] == [events.CT_RELATED] * 2
    drops = metrics.MetricsMap(lxc.map_fd(metrics.NAME)).totals()
    assert {k: v.count for k, v in drops.items() if k[0]} == {(133, DIR_INGRESS): 1}


def test_maps_write_read_delete(maps: policy.PolicyMaps, pin_dir: Path) -> None:
    state = MapState(
        {
            key(INGRESS, A_ID, TCP, 8080): ALLOW,
            PolicyKey(EGRESS, 0, UDP, 0x1000, 4): DENY,
            PolicyKey(EGRESS, 7, TCP, 0, 0): ALLOW,
            key(EGRESS, 0): ALLOW,
        }
    )
    change = maps.write(EP_A.endpoint_id, state)
    assert set(change.adds) == set(state.entries) and change.removes == ()
    assert maps.endpoints() == [EP_A.endpoint_id]
    assert (pin_dir / "pylium_policy_v2_00101").exists()
    assert maps.read(EP_A.endpoint_id) == state
    smaller = MapState({key(INGRESS, A_ID, TCP, 8080): ALLOW})
    change = maps.write(EP_A.endpoint_id, smaller)
    assert change.adds == {} and len(change.removes) == 3
    assert maps.read(EP_A.endpoint_id) == smaller
    assert maps.read(EP_B.endpoint_id) is None
    # with the state last written given, only the difference is written (no read-back)
    bigger = MapState({**smaller.entries, key(EGRESS, 9, UDP, 53): DENY})
    change = maps.write(EP_A.endpoint_id, bigger, old=smaller)
    assert set(change.adds) == {key(EGRESS, 9, UDP, 53)} and change.removes == ()
    assert maps.read(EP_A.endpoint_id) == bigger
    maps.write(EP_A.endpoint_id, smaller, old=bigger)
    too_big = MapState({key(INGRESS, i): ALLOW for i in range(1, policy.MAX_ENTRIES + 2)})
    with pytest.raises(DatapathError, match="16385 entries, the map holds 16384"):
        maps.write(EP_A.endpoint_id, too_big)
    assert maps.read(EP_A.endpoint_id) == smaller  # untouched
    assert maps.delete(EP_A.endpoint_id)
    assert not maps.delete(EP_A.endpoint_id)
    assert maps.endpoints() == []
    assert not (pin_dir / "pylium_policy_v2_00101").exists()


def test_policy_survives_the_loader(lxc_object: Path, pin_dir: Path) -> None:
    state = MapState({key(INGRESS, A_ID, TCP, 8080): ALLOW})
    with BpfObject(lxc_object, pin_dir) as first:
        seed(first)
        policy.PolicyMaps(first.map_fd(policy.NAME), pin_dir).write(EP_B.endpoint_id, state)
    # the loader is gone: the pins keep the outer map and, through it, the endpoint's map
    assert policy.PolicyMaps.from_pins(pin_dir).read(EP_B.endpoint_id) == state
    with BpfObject(lxc_object, pin_dir) as second:  # a restarted agent's load reuses them
        assert run(second, ipv4_tcp(str(POD_A), str(POD_B), dport=8080)) == TC_ACT_REDIRECT
        assert run(second, ipv4_tcp(str(POD_A), str(POD_B), dport=8081)) == TC_ACT_SHOT


def test_overlay_ingress_uses_the_tunnel_identity(
    lxc: BpfObject, overlay: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    maps.write(EP_B.endpoint_id, MapState({key(INGRESS, REMOTE_POD_ID, TCP, 80): ALLOW}))
    maps.write(EP_A.endpoint_id, MapState({}))  # A: enforced both ways, nothing allowed
    packet = ipv4_tcp(str(REMOTE), str(POD_B), dport=80)
    assert run(overlay, packet, FROM_OVERLAY, mark=REMOTE_POD_ID) == TC_ACT_REDIRECT
    assert run(overlay, packet, FROM_OVERLAY, mark=4004) == TC_ACT_SHOT  # another identity
    assert run(overlay, packet, FROM_OVERLAY, mark=0) == TC_ACT_SHOT  # no tunnel key: 147
    other = ipv4_tcp(str(REMOTE), str(POD_A), dport=80)
    assert run(overlay, other, FROM_OVERLAY, mark=REMOTE_POD_ID) == TC_ACT_SHOT
    evs = reader.poll()
    (allowed,) = [v for v in of_type(evs, events.TYPE_POLICY_VERDICT) if v.reason == 0]
    assert (allowed.src_identity, allowed.dst_identity, allowed.direction) == (
        REMOTE_POD_ID,
        B_ID,
        DIR_INGRESS,
    )
    assert [(d.reason, d.src_identity) for d in of_type(evs, events.TYPE_DROP)] == [
        (133, 4004),
        (147, 0),
        (133, REMOTE_POD_ID),
    ]
    # B's answer leaves through from-container: a reply to the connection from-overlay
    # accepted, so B's egress (nothing allowed) is not consulted; B's own new one is denied.
    reply = ipv4_tcp(str(POD_B), str(REMOTE), sport=80, dport=40000, flags=SYN | ACK)
    config.ConfigMap(lxc.map_fd(config.NAME)).set(tunnel_ifindex=1)
    assert run(lxc, reply) == TC_ACT_REDIRECT  # to the tunnel
    assert run(lxc, ipv4_tcp(str(POD_B), str(REMOTE), sport=41000, dport=80)) == TC_ACT_SHOT


def test_to_container_checks_ingress_with_the_ipcache_identity(
    lxc: BpfObject, maps: policy.PolicyMaps, reader: events.EventReader
) -> None:
    # REMOTE's prefix has identity 6 (remote-node) in the seeded ipcache; native routing
    # hands such packets to the kernel, which routes them to the pod's veth.
    maps.write(EP_B.endpoint_id, MapState({key(INGRESS, 6, TCP, 80): ALLOW}))
    packet = ipv4_tcp(str(REMOTE), str(POD_B), dport=80)
    assert run(lxc, packet, TO_CONTAINER) == TC_ACT_OK
    assert run(lxc, ipv4_tcp(str(REMOTE), str(POD_B), dport=81), TO_CONTAINER) == TC_ACT_SHOT
    unknown_source = ipv4_tcp("9.9.9.9", str(POD_B), dport=80)  # world (2): not allowed
    assert run(lxc, unknown_source, TO_CONTAINER) == TC_ACT_SHOT
    assert run(lxc, ethernet(0x0806), TO_CONTAINER) == TC_ACT_OK  # ARP
    assert run(lxc, ipv4_tcp(str(REMOTE), "10.0.9.9"), TO_CONTAINER) == TC_ACT_OK  # no endpoint
    drops = of_type(reader.poll(), events.TYPE_DROP)
    assert [(d.reason, d.direction, d.src_identity, d.dport) for d in drops] == [
        (133, DIR_INGRESS, 6, 81),
        (133, DIR_INGRESS, 2, 80),
    ]
    # the pod's reply leaves through from-container as a conntrack reply (B's egress denies all)
    reply = ipv4_tcp(str(POD_B), str(REMOTE), sport=80, dport=40000, flags=SYN | ACK)
    config.ConfigMap(lxc.map_fd(config.NAME)).set(tunnel_ifindex=1)
    assert run(lxc, reply) == TC_ACT_REDIRECT
    # the connection is established now: further packets pass; a revoked rule stops them
    assert run(lxc, packet, TO_CONTAINER) == TC_ACT_OK
    maps.write(EP_B.endpoint_id, MapState({}))
    assert run(lxc, packet, TO_CONTAINER) == TC_ACT_SHOT


# The datapath answers as the core's reference lookup, for random map states.

DESTINATIONS = {5001: "10.9.0.1", 5002: "10.9.0.2", 5003: "10.9.0.3"}
IDENTITIES = st.sampled_from([0, *DESTINATIONS])
PROTOS = st.sampled_from([0, TCP, UDP, ICMP])


@st.composite
def map_states(draw: st.DrawFn) -> dict[PolicyKey, MapEntry]:
    # A few L4 prefixes (nested ones compete), each keyed for some identities with random
    # verdicts (identity-specific and wildcard entries often tie).
    entries: dict[PolicyKey, MapEntry] = {}
    for _ in range(draw(st.integers(0, 5))):
        proto = draw(PROTOS)
        plen = draw(st.sampled_from([0, 1, 4, 12, 13, 16])) if proto else 0
        port = draw(st.sampled_from([0, 8, 80, 8080, 8088, 65535])) if proto else 0
        shift = 16 - plen
        for ident in draw(st.sets(IDENTITIES, min_size=1, max_size=3)):
            key = PolicyKey(EGRESS, ident, proto, port >> shift << shift, plen)
            entries[key] = MapEntry(draw(st.booleans()))
    return entries


PACKETS = st.lists(
    st.tuples(
        st.sampled_from(list(DESTINATIONS)),
        st.sampled_from([TCP, UDP, ICMP]),
        st.sampled_from([0, 8, 53, 80, 8080, 8088, 8095, 8096, 65535]),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(entries=map_states(), packets=PACKETS)
def test_datapath_lookup_equals_core_lookup(
    lxc: BpfObject,
    maps: policy.PolicyMaps,
    entries: dict[PolicyKey, MapEntry],
    packets: list[tuple[int, int, int]],
) -> None:
    ipc = ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME))
    for ident, ip in DESTINATIONS.items():
        ipc.upsert(ipaddress.IPv4Network(f"{ip}/32"), ipcache.Entry(identity=ident))
    state = MapState(entries)
    maps.write(EP_A.endpoint_id, state)  # successive examples go through the update path
    assert maps.read(EP_A.endpoint_id) == state
    for ident, proto, port in packets:
        dst = DESTINATIONS[ident]
        if proto == TCP:
            packet = ipv4_tcp(str(POD_A), dst, dport=port)
        elif proto == UDP:
            packet = ipv4_udp(str(POD_A), dst, dport=port)
        else:
            port %= 256
            packet = ipv4_icmp(str(POD_A), dst, icmp_type=port)
        found = state.lookup(EGRESS, ident, proto, port)
        expected = TC_ACT_OK if found is not None and not found[1].deny else TC_ACT_SHOT
        assert run(lxc, packet) == expected, (ident, proto, port, found)
