"""CIDR identities: which prefixes policy names, stable node-local numbers, address labels."""

from __future__ import annotations

import ipaddress

from pylium.core.identity.numeric import LOCAL_SCOPE
from pylium.core.policy.cidr import assign, cidr_labels, labels_for_address, policy_prefixes
from pylium.core.policy.peers import CIDRSelector
from pylium.core.selectors import LabelSet
from pylium.model.policy import rules_from_object

N = ipaddress.IPv4Network

CNP = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "p", "namespace": "default"},
    "spec": {
        "endpointSelector": {},
        "egress": [
            {"toCIDR": ["192.0.2.0/24", "0.0.0.0/0"]},
            {"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}]},
        ],
        "ingressDeny": [{"fromCIDR": ["198.51.100.7/32", "2001:db8::/32"]}],
    },
}


def test_prefixes_named_by_policy() -> None:
    rules = rules_from_object(CNP)
    assert policy_prefixes(rules, "default") == {
        N("192.0.2.0/24"),
        N("10.0.0.0/8"),
        N("10.96.0.0/12"),
        N("198.51.100.7/32"),
    }


def test_numbers_are_stable_and_local() -> None:
    first = assign([N("10.0.0.0/8"), N("192.0.2.0/24")], {})
    assert first == {N("10.0.0.0/8"): LOCAL_SCOPE + 1, N("192.0.2.0/24"): LOCAL_SCOPE + 2}
    second = assign([N("192.0.2.0/24"), N("172.16.0.0/12")], first)
    assert second == {N("192.0.2.0/24"): LOCAL_SCOPE + 2, N("172.16.0.0/12"): LOCAL_SCOPE + 1}


def test_address_labels_follow_the_longest_prefix() -> None:
    prefixes = [N("10.0.0.0/8"), N("10.96.0.0/12")]
    ip = ipaddress.IPv4Address
    assert labels_for_address(ip("10.96.0.10"), prefixes) == cidr_labels(N("10.96.0.0/12"))
    assert labels_for_address(ip("10.1.0.1"), prefixes) == cidr_labels(N("10.0.0.0/8"))
    assert labels_for_address(ip("8.8.8.8"), prefixes) == {"reserved:world"}
    # and the except block is not selected by the outer rule, the rest is
    rule = CIDRSelector(N("10.0.0.0/8"), (N("10.96.0.0/12"),))
    assert not rule.matches(LabelSet.parse(cidr_labels(N("10.96.0.0/12"))))
    assert rule.matches(LabelSet.parse(cidr_labels(N("10.0.0.0/8"))))
