"""Identity cores: reserved numbers, ranges, identity-relevant labels, lowest-free allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylium.base.errors import AllocationError
from pylium.core.identity.allocate import labels_key, lowest_free
from pylium.core.identity.labels import Label, LabelFilter, identity_labels
from pylium.core.identity.numeric import ReservedIdentity, cluster_range, is_local, is_reserved


def test_reserved_numbers_and_labels_are_ciliums() -> None:
    expected = {
        "reserved:host": 1,
        "reserved:world": 2,
        "reserved:unmanaged": 3,
        "reserved:health": 4,
        "reserved:init": 5,
        "reserved:remote-node": 6,
        "reserved:kube-apiserver": 7,
        "reserved:ingress": 8,
        "reserved:world-ipv4": 9,
        "reserved:world-ipv6": 10,
    }
    assert {r.label: int(r) for r in ReservedIdentity if r} == expected


def test_ranges_per_cluster_id() -> None:
    assert (cluster_range(0).start, cluster_range(0).stop - 1) == (256, 65535)
    assert (cluster_range(3).start, cluster_range(3).stop - 1) == (3 << 16, (4 << 16) - 1)
    with pytest.raises(AllocationError):
        cluster_range(256)
    assert is_reserved(7) and not is_reserved(256)
    assert is_local((1 << 24) + 5) and not is_local(70000)


def test_identity_labels_filter_bookkeeping_and_add_synthetic_ones() -> None:
    labels = identity_labels(
        pod_labels={
            "app": "web",
            "pod-template-hash": "abc",
            "controller-revision-hash": "x",
            "app.kubernetes.io/name": "shop",
            "statefulset.kubernetes.io/pod-name": "web-0",
        },
        namespace="prod",
        namespace_labels={"team": "a"},
        service_account="web-sa",
        cluster="c1",
    )
    assert [str(lb) for lb in labels] == [
        "k8s:app=web",
        "k8s:app.kubernetes.io/name=shop",
        "k8s:io.cilium.k8s.namespace.labels.team=a",
        "k8s:io.cilium.k8s.policy.cluster=c1",
        "k8s:io.cilium.k8s.policy.serviceaccount=web-sa",
        "k8s:io.kubernetes.pod.namespace=prod",
    ]


def test_user_filter_switches_to_whitelist() -> None:
    only_app = LabelFilter.from_user(["app"])
    labels = identity_labels(
        pod_labels={"app": "a", "tier": "t"}, namespace="ns", label_filter=only_app
    )
    keys = {lb.key for lb in labels}
    assert "app" in keys and "tier" not in keys and "io.kubernetes.pod.namespace" in keys
    sourced = LabelFilter.from_user(["k8s:app"])
    assert sourced.relevant(Label("k8s", "app", "x")) and not sourced.relevant(
        Label("k8s", "tier", "t")
    )
    no_tier = LabelFilter.from_user(["!tier"])
    keys = {
        lb.key
        for lb in identity_labels(
            pod_labels={"app": "a", "tier": "t"}, namespace="ns", label_filter=no_tier
        )
    }
    assert "tier" not in keys and "app" in keys


def test_label_parse_round_trip() -> None:
    for text in ("k8s:app=web", "reserved:host", "k8s:app.kubernetes.io/name=x"):
        assert str(Label.parse(text)) == text
    assert Label.parse("app=web") == Label("unspec", "app", "web")


@given(st.lists(st.text(alphabet="abcxyz=", min_size=1, max_size=5), max_size=6))
def test_labels_key_ignores_order_and_duplicates(raw: list[str]) -> None:
    labels = [Label("k8s", r) for r in raw]
    assert labels_key(labels) == labels_key(list(reversed(labels)) + labels)


@given(st.sets(st.integers(256, 400)))
def test_lowest_free_is_lowest_unused(used: set[int]) -> None:
    got = lowest_free(used)
    assert got not in used and got >= 256
    assert all(i in used for i in range(256, got))
