"""The connectivity test's scenario table: upstream's load-balancing checks in no-policies and
no-policies-extra, which checks need kube-proxy replacement, and the summary line with
skipped scenarios."""

from __future__ import annotations

from pylium.lab.connectivity import Outcome, scenario_names, scenarios, summary


def test_load_balanced_checks() -> None:
    by_name = {s.name: s for s in scenarios("192.0.2.1", "192.0.2.2", "192.0.2.0/24")}
    assert {"no-policies", "no-policies-extra"} <= set(scenario_names())
    targets = {c.target for c in by_name["no-policies"].checks if c.load_balanced}
    assert targets == {
        "service:echo-same-node",
        "service:echo-other-node",
        "hostport:echo-same-node",
        "hostport:echo-other-node",
    }
    extra = by_name["no-policies-extra"].checks
    assert all(c.load_balanced and c.expect for c in extra)
    assert {c.target.partition(":")[0] for c in extra} == {"nodeport-local", "nodeport-remote"}
    north_south = by_name["north-south-loadbalancing"].checks
    assert {c.source for c in north_south} == {"outside"}
    assert all(c.load_balanced and c.expect for c in north_south)
    assert by_name["health"].verify is not None and not by_name["health"].checks
    assert scenario_names()[-1] == "no-unexpected-packet-drops"  # last, as upstream
    assert by_name["no-unexpected-packet-drops"].verify is not None
    # policy scenarios keep to pods, hosts and the world
    assert not any(c.load_balanced for s in by_name.values() for c in s.checks if s.policies)


def test_summary_counts_skipped_apart() -> None:
    outcomes = [
        Outcome("no-policies", checks=17),
        Outcome("no-policies-extra", skipped="needs kube-proxy replacement"),
        Outcome("client-ingress", checks=6, failures=["x"]),
    ]
    assert summary(outcomes) == "1/2 tests successful (23 checks), 1 tests skipped"
