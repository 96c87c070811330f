"""Which rules select an endpoint and when a direction is enforced (core.policy.resolve)."""

from __future__ import annotations

from typing import Any

from pylium.core.policy.explain import DropReason, Verdict, explain_identity
from pylium.core.policy.mapstate import compute_map_state
from pylium.core.policy.peers import Direction
from pylium.core.policy.resolve import (
    EnforcementMode,
    PolicyConfig,
    ResolvedPolicy,
    Subject,
    Why,
    resolve,
)
from pylium.core.policy.selectorcache import SelectorCache
from pylium.model.policy import CCNP, Rule, parse_cilium_rule, policy_labels

WEB = 1000
CLIENT = 1001
IDENTITIES = {
    WEB: ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=prod"],
    CLIENT: ["k8s:app=client", "k8s:io.kubernetes.pod.namespace=prod"],
    1002: ["reserved:init"],
}
IN, OUT = Direction.INGRESS, Direction.EGRESS


def rule(name: str = "r", **spec: Any) -> Rule:
    spec.setdefault("endpointSelector", {"matchLabels": {"app": "web"}})
    return parse_cilium_rule(spec, namespace="", labels=policy_labels(CCNP, "", name, ""))


def run(
    rules: list[Rule], ident: int = WEB, labels: list[str] | None = None, **config: Any
) -> ResolvedPolicy:
    subject = Subject(ident, frozenset(labels if labels is not None else IDENTITIES[ident]))
    return resolve(rules, subject, PolicyConfig(**config))


def verdict(res: ResolvedPolicy, remote: int, direction: Direction, port: int = 80) -> Verdict:
    cache = SelectorCache(IDENTITIES)
    exp = explain_identity(
        res, cache, remote_identity=remote, proto=6, port=port, direction=direction
    )
    hit = compute_map_state(res, cache).lookup(direction, remote, 6, port)
    if exp.verdict is not Verdict.AUDIT:  # the map still denies; the datapath audits
        assert (hit is not None and not hit[1].deny) == exp.allowed
    return exp.verdict


def test_no_rules_nothing_enforced() -> None:
    res = run([])
    assert (res.ingress.enforced, res.egress.enforced) == (False, False)
    assert res.ingress.why is Why.NO_RULES
    assert verdict(res, CLIENT, IN) is Verdict.ALLOWED


def test_enforcement_is_per_direction() -> None:
    res = run([rule(ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}])])
    assert res.ingress.enforced and not res.egress.enforced
    assert verdict(res, CLIENT, IN) is Verdict.ALLOWED
    assert verdict(res, 2, IN) is Verdict.DENIED
    assert verdict(res, 2, OUT) is Verdict.ALLOWED


def test_rule_not_selecting_the_endpoint_changes_nothing() -> None:
    r = rule(endpointSelector={"matchLabels": {"app": "other"}}, ingress=[{}])
    assert not run([r]).ingress.enforced


def test_deny_rules_switch_on_default_deny() -> None:
    res = run([rule(egressDeny=[{"toEntities": ["world"]}])])
    assert res.egress.enforced and res.egress.why is Why.RULES
    assert verdict(res, CLIENT, OUT) is Verdict.DENIED
    assert verdict(res, 2, OUT) is Verdict.DENIED


def test_enable_default_deny_false_allows_the_rest_but_deny_still_wins() -> None:
    res = run(
        [
            rule(
                egressDeny=[{"toEntities": ["world"]}],
                enableDefaultDeny={"egress": False},
            )
        ]
    )
    assert res.egress.enforced and res.egress.why is Why.DEFAULT_ALLOW
    assert verdict(res, CLIENT, OUT) is Verdict.ALLOWED
    assert verdict(res, 2, OUT) is Verdict.DENIED


def test_one_default_deny_rule_outweighs_default_allow_rules() -> None:
    allow_client = rule("a", ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}])
    lenient = rule("b", ingress=[{"fromEntities": ["host"]}], enableDefaultDeny={"ingress": False})
    res = run([allow_client, lenient])
    assert res.ingress.why is Why.RULES
    assert verdict(res, 2, IN) is Verdict.DENIED


def test_always_mode_enforces_without_rules_and_localhost_stays_allowed() -> None:
    res = run([], mode=EnforcementMode.ALWAYS)
    assert res.ingress.enforced and res.egress.enforced
    assert verdict(res, CLIENT, IN) is Verdict.DENIED
    assert verdict(res, 1, IN) is Verdict.ALLOWED
    assert verdict(res, 1, OUT) is Verdict.DENIED


def test_allow_localhost_can_be_off() -> None:
    res = run([], mode=EnforcementMode.ALWAYS, allow_localhost=False)
    assert verdict(res, 1, IN) is Verdict.DENIED


def test_never_mode_ignores_rules() -> None:
    res = run([rule(ingressDeny=[{"fromEntities": ["all"]}])], mode=EnforcementMode.NEVER)
    assert not res.ingress.enforced and res.ingress.why is Why.NEVER
    assert verdict(res, CLIENT, IN) is Verdict.ALLOWED


def test_init_endpoint_is_always_enforced() -> None:
    res = run([], ident=1002)
    assert res.ingress.why is Why.INIT and res.egress.why is Why.INIT
    assert verdict(res, CLIENT, OUT) is Verdict.DENIED
    init_rule = rule(
        endpointSelector={"matchLabels": {"reserved:init": ""}},
        egress=[{"toEntities": ["cluster"]}],
    )
    assert verdict(run([init_rule], ident=1002), 1, OUT) is Verdict.ALLOWED


def test_host_policy_needs_the_host_firewall_and_a_node_selector() -> None:
    host_labels = ["reserved:host", "node:role=worker"]
    node_rule = parse_cilium_rule(
        {
            "nodeSelector": {"matchLabels": {"role": "worker"}},
            "ingress": [{"fromEntities": ["cluster"]}],
        },
        namespace="",
        labels=policy_labels(CCNP, "", "host", ""),
    )
    pod_rule = rule(endpointSelector={}, ingress=[{}])
    off = run([node_rule, pod_rule], ident=1, labels=host_labels)
    assert not off.ingress.enforced and off.ingress.why is Why.HOST_FIREWALL_OFF
    on = run([node_rule, pod_rule], ident=1, labels=host_labels, host_firewall=True)
    assert on.ingress.enforced and [r.ref.name for r in on.ingress.rules] == ["host"]
    assert verdict(on, 6, IN) is Verdict.ALLOWED
    assert verdict(on, 2, IN) is Verdict.DENIED
    # no implicit allow-from-host for the host itself
    assert all(c.origin.implicit != "allow-localhost-ingress" for c in on.ingress.contributions)
    # and the pod rule does not select the host, nor the node rule a pod
    assert [r.ref.name for r in run([node_rule, pod_rule], host_firewall=True).ingress.rules] == [
        "r"
    ]


def test_audit_mode_reports_would_be_drops() -> None:
    res = run([rule(ingressDeny=[{"fromEntities": ["world"]}])], audit=True)
    cache = SelectorCache(IDENTITIES)
    denied = explain_identity(res, cache, remote_identity=2, proto=6, port=80, direction=IN)
    assert denied.verdict is Verdict.AUDIT and denied.drop_reason is DropReason.POLICY_DENY
    default = explain_identity(res, cache, remote_identity=CLIENT, proto=6, port=80, direction=IN)
    assert default.verdict is Verdict.AUDIT and default.drop_reason is DropReason.POLICY_DENIED
    assert default.allowed


def test_explanations_name_the_rules() -> None:
    res = run(
        [rule("allow-client", ingress=[{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}])]
    )
    cache = SelectorCache(IDENTITIES)
    ok = explain_identity(res, cache, remote_identity=CLIENT, proto=6, port=80, direction=IN)
    assert [str(o) for o in ok.matched] == [
        "CiliumClusterwideNetworkPolicy allow-client[0] ingress[0]"
    ]
    no = explain_identity(res, cache, remote_identity=2, proto=6, port=80, direction=IN)
    assert no.drop_reason is DropReason.POLICY_DENIED
    assert (
        "rules select this endpoint: CiliumClusterwideNetworkPolicy allow-client[0]" in no.summary
    )
    free = explain_identity(res, cache, remote_identity=2, proto=6, port=80, direction=OUT)
    assert (
        free.summary == "egress is not enforced (no policy selects this endpoint): "
        "identity 2 on 80/TCP is allowed"
    )
