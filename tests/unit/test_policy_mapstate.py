"""Policy map entries: LPM port keys, entities, CIDRs, named ports, deny precedence, diffs,
and the selector cache that feeds them (core.policy.mapstate, diff, selectorcache)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pylium.core.policy.diff import diff
from pylium.core.policy.mapstate import (
    MapState,
    PolicyKey,
    compute_map_state,
    port_prefixes,
)
from pylium.core.policy.peers import Direction, entity_selectors
from pylium.core.policy.resolve import PolicyConfig, Subject, resolve
from pylium.core.policy.selectorcache import SelectionChange, SelectorCache
from pylium.model.policy import CCNP, Entity, LabelSelector, Rule, parse_cilium_rule, policy_labels

WEB, CLIENT, OTHER_CLUSTER = 1000, 1001, 70000
CIDR_A, CIDR_B, CIDR_C = 16777217, 16777218, 16777219
NS = "k8s:io.kubernetes.pod.namespace=prod"
IDENTITIES = {
    WEB: ["k8s:app=web", "k8s:io.cilium.k8s.policy.cluster=default", NS],
    CLIENT: ["k8s:app=client", "k8s:io.cilium.k8s.policy.cluster=default", NS],
    OTHER_CLUSTER: ["k8s:app=client", "k8s:io.cilium.k8s.policy.cluster=c2", NS],
    CIDR_A: ["cidr:10.0.0.0/8", "reserved:world"],
    CIDR_B: ["cidr:10.1.0.0/16", "reserved:world"],
    CIDR_C: ["cidr:2001:db8::/32", "reserved:world"],
}
IN, OUT = Direction.INGRESS, Direction.EGRESS


def rule(name: str = "r", **spec: Any) -> Rule:
    spec.setdefault("endpointSelector", {"matchLabels": {"app": "web"}})
    return parse_cilium_rule(spec, namespace="", labels=policy_labels(CCNP, "", name, ""))


def entries(rules: list[Rule], **named: Any) -> MapState:
    res = resolve(
        rules,
        Subject(WEB, frozenset(IDENTITIES[WEB])),
        PolicyConfig(allow_localhost=False),
        **named,
    )
    return compute_map_state(res, SelectorCache(IDENTITIES))


def keys(state: MapState, *, deny: bool | None = None) -> set[str]:
    return {str(k) for k, v in state.entries.items() if deny is None or v.deny == deny}


def test_port_prefixes() -> None:
    assert port_prefixes(8080, 8095) == [(8080, 12)]
    assert port_prefixes(0, 65535) == [(0, 0)]
    assert port_prefixes(80, 80) == [(80, 16)]
    assert port_prefixes(1, 3) == [(1, 16), (2, 15)]


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_prefixes_cover_exactly_the_range(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    blocks = [PolicyKey(IN, 0, 6, p, n).port_range for p, n in port_prefixes(start, end)]
    assert blocks[0][0] == start and blocks[-1][1] == end
    assert all(x[1] + 1 == y[0] for x, y in itertools.pairwise(blocks))
    assert len(blocks) <= 32


def test_l3_l4_and_range_keys() -> None:
    state = entries(
        [
            rule(ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]),
            rule(
                ingress=[
                    {"toPorts": [{"ports": [{"port": "8080", "endPort": 8095, "protocol": "TCP"}]}]}
                ]
            ),
            rule(ingress=[{"toPorts": [{"ports": [{"port": "53"}]}]}]),
        ]
    )
    assert keys(state) == {
        "ingress 1001 ANY",
        "ingress 70000 ANY",  # peers are not limited to the local cluster by default
        "ingress 0 8080-8095/TCP",
        "ingress 0 53/TCP",
        "ingress 0 53/UDP",
        "ingress 0 53/SCTP",
        "egress 0 ANY",
    }


def test_entities_map_to_reserved_identities() -> None:
    cache = SelectorCache(IDENTITIES)

    def ids(entity: Entity) -> set[int]:
        found: set[int] = set()
        for sel in entity_selectors(entity, "default"):
            found |= {0} if sel.is_wildcard else cache.select(sel)
        return found

    assert ids(Entity.ALL) == {0}
    assert ids(Entity.NONE) == set()
    assert ids(Entity.WORLD) == {2, 9, 10, CIDR_A, CIDR_B, CIDR_C}
    assert ids(Entity.WORLD_IPV4) == {9}
    assert ids(Entity.HOST) == {1}
    assert ids(Entity.REMOTE_NODE) == {6, 7}
    assert ids(Entity.KUBE_APISERVER) == {7}
    assert ids(Entity.HEALTH) == {4}
    assert ids(Entity.INIT) == {5}
    assert ids(Entity.UNMANAGED) == {3}
    assert ids(Entity.INGRESS) == {8}
    assert ids(Entity.CLUSTER) == {1, 3, 4, 5, 6, 7, 8, WEB, CLIENT}


def test_cidr_peers_select_cidr_identities_inside_and_not_excepted() -> None:
    state = entries(
        [
            rule(egress=[{"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}]}]),
            rule(egress=[{"toCIDR": ["2001:db8::/16"]}]),
            rule(egress=[{"toCIDR": ["0.0.0.0/0"]}], ingress=[{"fromCIDR": ["10.1.0.0/24"]}]),
        ]
    )
    assert keys(state) == {
        f"egress {CIDR_A} ANY",
        f"egress {CIDR_C} ANY",
        "egress 2 ANY",
        "egress 9 ANY",
        f"egress {CIDR_B} ANY",  # via 0.0.0.0/0
    }


def test_named_ports_resolve_through_the_given_map() -> None:
    spec = {"toPorts": [{"ports": [{"port": "http", "protocol": "TCP"}, {"port": "dns"}]}]}
    state = entries(
        [rule(ingress=[spec])],
        ingress_named_ports={"http": frozenset({(6, 8080)}), "dns": frozenset({(17, 53)})},
    )
    assert keys(state) == {"ingress 0 8080/TCP", "ingress 0 53/UDP", "egress 0 ANY"}
    # unresolved named ports allow nothing, but the direction is still enforced
    assert keys(entries([rule(ingress=[spec])])) == {"egress 0 ANY"}


def test_wildcard_deny_removes_the_allows_it_covers() -> None:
    state = entries(
        [
            rule(ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]),
            rule(ingressDeny=[{"toPorts": [{"ports": [{"port": "0", "protocol": "TCP"}]}]}]),
        ]
    )
    assert keys(state, deny=True) == {"ingress 0 TCP"}
    assert keys(state, deny=False) == {"ingress 1001 ANY", "ingress 70000 ANY", "egress 0 ANY"}
    hit = state.lookup(IN, CLIENT, 6, 80)
    assert hit is not None and hit[1].deny
    hit = state.lookup(IN, CLIENT, 17, 53)
    assert hit is not None and not hit[1].deny


def test_identity_deny_gets_a_twin_under_a_narrower_wildcard_allow() -> None:
    state = entries(
        [
            rule(ingress=[{"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]),
            rule(ingressDeny=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]),
        ]
    )
    assert keys(state, deny=True) == {
        f"ingress {i} {l4}" for i in (CLIENT, OTHER_CLUSTER) for l4 in ("ANY", "80/TCP")
    }
    twin = state.entries[PolicyKey(IN, CLIENT, 6, 80, 16)]
    assert [str(o) for o in twin.derived_from] == [
        "CiliumClusterwideNetworkPolicy r[0] ingressDeny[0]"
    ]
    assert state.lookup(IN, CLIENT, 6, 80) == (PolicyKey(IN, CLIENT, 6, 80, 16), twin)
    hit = state.lookup(IN, 2, 6, 80)
    assert hit is not None and not hit[1].deny


def test_lookup_prefers_longest_prefix_then_the_identity() -> None:
    state = entries(
        [
            rule(ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]),
            rule(ingress=[{"toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]}]),
        ]
    )
    assert state.lookup(IN, CLIENT, 6, 80) == (
        PolicyKey(IN, 0, 6, 80, 16),
        state.entries[PolicyKey(IN, 0, 6, 80, 16)],
    )
    assert state.lookup(IN, CLIENT, 6, 81) is not None
    assert state.lookup(IN, 2, 6, 81) is None


def test_selector_cache_updates_incrementally() -> None:
    cache = SelectorCache(IDENTITIES)
    clients = LabelSelector((("any:app", "client"),))
    assert cache.select(clients) == {CLIENT, OTHER_CLUSTER}
    changes = cache.update(added={2000: ["k8s:app=client"]}, removed=[OTHER_CLUSTER])
    assert changes == {clients: SelectionChange(frozenset({2000}), frozenset({OTHER_CLUSTER}))}
    assert cache.select(clients) == {CLIENT, 2000}
    # relabelling an identity moves it out of the selection
    assert cache.update(added={2000: ["k8s:app=db"]})[clients].removed == {2000}
    assert cache.update(added={3000: ["k8s:app=db"]}) == {}
    cache.release(clients)
    assert clients not in cache.selections()


def test_diff_touches_only_what_changed() -> None:
    allow = rule(ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}])
    old = entries([allow])
    new = entries([allow, rule("d", ingressDeny=[{"fromEntities": ["world"]}])])
    d = diff(old, new)
    assert {str(k) for k in d.adds} == {
        "ingress 2 ANY",
        "ingress 9 ANY",
        "ingress 10 ANY",
        *(f"ingress {i} ANY" for i in (CIDR_A, CIDR_B, CIDR_C)),
    }
    assert d.removes == ()
    assert d.apply(old) == new
    back = diff(new, old)
    assert not back.adds and len(back.removes) == 6
    assert diff(old, old).empty
