"""Properties of policy resolution over random rule sets (hypothesis):

- the map state, read with the datapath's lookup, gives the verdict that direct rule
  evaluation (the explainer) gives, for every known identity, direction, protocol and port;
- deny beats allow: a packet a deny rule matches is denied whatever allows exist;
- the map state does not depend on the order of rules.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylium.core import selectors
from pylium.core.policy.explain import explain_identity
from pylium.core.policy.mapstate import MapState, compute_map_state
from pylium.core.policy.peers import Direction, rule_contributions, selector_matches
from pylium.core.policy.resolve import EnforcementMode, PolicyConfig, Subject, resolve
from pylium.core.policy.selectorcache import SelectorCache
from pylium.model.policy import CCNP, CNP, Entity, Rule, parse_cilium_rule, policy_labels

NS_KEY = "k8s:io.kubernetes.pod.namespace"
PODS = {
    1000 + i: [f"k8s:app={app}", f"{NS_KEY}={ns}", "k8s:io.cilium.k8s.policy.cluster=default"]
    for i, (app, ns) in enumerate([("a", "x"), ("b", "x"), ("c", "x"), ("a", "y"), ("b", "y")])
}
IDENTITIES: dict[int, list[str]] = {
    **PODS,
    1010: ["reserved:init"],
    16777217: ["cidr:10.0.0.0/8", "reserved:world"],
    16777218: ["cidr:10.1.0.0/16", "reserved:world"],
    16777219: ["cidr:10.1.2.0/24", "reserved:world"],
    16777220: ["cidr:192.168.0.0/16", "reserved:world"],
}
PACKETS = [
    (6, 0), (6, 79), (6, 80), (6, 81), (6, 90), (6, 91), (6, 8080), (6, 8095), (6, 65535),
    (17, 53), (17, 80), (132, 80), (1, 8), (1, 0), (58, 128),
]  # fmt: skip
UNIVERSE = SelectorCache(IDENTITIES)
ALL_IDS = sorted(UNIVERSE.identities)

apps = st.sampled_from(["a", "b", "c"])
selector = st.one_of(
    st.just({}),
    st.builds(lambda a: {"matchLabels": {"app": a}}, apps),
    st.builds(
        lambda a: {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": [a]}]}, apps
    ),
    st.builds(lambda a, ns: {"matchLabels": {"app": a, NS_KEY: ns}}, apps, st.sampled_from("xy")),
)
cidr_rule = st.sampled_from(
    [
        {"cidr": "10.0.0.0/8"},
        {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]},
        {"cidr": "10.1.0.0/16", "except": ["10.1.2.0/24"]},
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]},
    ]
)
port = st.fixed_dictionaries(
    {"port": st.sampled_from(["0", "53", "80", "81", "8080"])},
    optional={
        "endPort": st.sampled_from([0, 79, 90, 8095]),
        "protocol": st.sampled_from(["TCP", "UDP", "SCTP", "ANY"]),
    },
)


def section(d: str) -> st.SearchStrategy[dict[str, Any]]:
    peers = st.fixed_dictionaries(
        {},
        optional={
            f"{d}Endpoints": st.lists(selector, min_size=1, max_size=2),
            f"{d}Entities": st.lists(st.sampled_from(list(Entity)), min_size=1, max_size=2),
            f"{d}CIDRSet": st.lists(cidr_rule, min_size=1, max_size=2),
        },
    )
    l4 = st.one_of(
        st.just({}),
        st.builds(lambda ps: {"toPorts": [{"ports": ps}]}, st.lists(port, min_size=1, max_size=3)),
        st.just({"icmps": [{"fields": [{"type": 8}]}]}),
    )
    return st.builds(lambda p, q: {**p, **q}, peers, l4)


rule_spec = st.fixed_dictionaries(
    {"endpointSelector": selector},
    optional={
        "ingress": st.lists(section("from"), min_size=1, max_size=2),
        "ingressDeny": st.lists(section("from"), min_size=1, max_size=1),
        "egress": st.lists(section("to"), min_size=1, max_size=2),
        "egressDeny": st.lists(section("to"), min_size=1, max_size=1),
        "enableDefaultDeny": st.fixed_dictionaries(
            {}, optional={"ingress": st.booleans(), "egress": st.booleans()}
        ),
    },
)


def to_rules(specs: list[tuple[bool, dict[str, Any]]]) -> list[Rule]:
    out = []
    for i, (namespaced, spec) in enumerate(specs):
        ns = "x" if namespaced else ""
        labels = policy_labels(CNP if ns else CCNP, ns, f"p{i}", "")
        out.append(parse_cilium_rule(spec, namespace=ns, labels=labels))
    return out


rule_sets = st.lists(st.tuples(st.booleans(), rule_spec), max_size=4).map(to_rules)
configs = st.builds(
    lambda mode, localhost: PolicyConfig(mode=mode, allow_localhost=localhost),
    st.sampled_from(list(EnforcementMode)),
    st.booleans(),
)
subjects = st.sampled_from([*PODS, 1010]).map(lambda i: Subject(i, frozenset(IDENTITIES[i])))
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def allowed(state: MapState, direction: Direction, ident: int, proto: int, port: int) -> bool:
    hit = state.lookup(direction, ident, proto, port)
    return hit is not None and not hit[1].deny


@SETTINGS
@given(rule_sets, subjects, configs)
def test_map_state_agrees_with_direct_evaluation(
    rules: list[Rule], subject: Subject, config: PolicyConfig
) -> None:
    res = resolve(rules, subject, config)
    state = compute_map_state(res, UNIVERSE)
    for direction in Direction:
        for ident in ALL_IDS:
            for proto, port in PACKETS:
                exp = explain_identity(
                    res,
                    UNIVERSE,
                    remote_identity=ident,
                    proto=proto,
                    port=port,
                    direction=direction,
                )
                assert allowed(state, direction, ident, proto, port) == exp.allowed, (
                    direction, ident, proto, port, exp.render(), state.render(),
                )  # fmt: skip


@SETTINGS
@given(rule_sets, rule_spec, subjects, configs)
def test_deny_beats_allow(
    rules: list[Rule], deny_spec: dict[str, Any], subject: Subject, config: PolicyConfig
) -> None:
    deny_spec = {
        "endpointSelector": {},
        "ingressDeny": deny_spec.get("ingress", [{}]),
        "egressDeny": deny_spec.get("egress", [{}]),
    }
    allow_all = {
        "endpointSelector": {},
        "ingress": [{"fromEntities": ["all"]}],
        "egress": [{"toEntities": ["all"]}],
    }
    deny, everything = to_rules([(False, deny_spec), (False, allow_all)])
    res = resolve([*rules, everything, deny], subject, config)
    state = compute_map_state(res, UNIVERSE)
    if config.mode is EnforcementMode.NEVER:
        return
    for direction in Direction:
        contribs = list(rule_contributions(deny, direction, named_ports={}, cluster_name="default"))
        for ident in ALL_IDS:
            labels = selectors.LabelSet.parse(IDENTITIES.get(ident) or UNIVERSE.identities[ident])
            for proto, port in PACKETS:
                hit = any(
                    c.l4.matches(proto, port) and selector_matches(c.selector, labels)
                    for c in contribs
                )
                if hit:
                    assert not allowed(state, direction, ident, proto, port)


@SETTINGS
@given(rule_sets.flatmap(lambda rs: st.tuples(st.just(rs), st.permutations(rs))), subjects)
def test_map_state_is_independent_of_rule_order(
    pair: tuple[list[Rule], list[Rule]], subject: Subject
) -> None:
    first, second = pair
    a = compute_map_state(resolve(first, subject), UNIVERSE)
    b = compute_map_state(resolve(second, subject), UNIVERSE)
    assert a == b
