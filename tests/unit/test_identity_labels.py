"""The identity-relevant label filter: Cilium's defaults and its longest-match rule."""

from __future__ import annotations

import re

import pytest

from pylium.core.identity.labels import Label, LabelFilter, LabelPrefix, Source, identity_labels


@pytest.mark.parametrize(
    ("label", "kept"),
    [
        ("k8s:app=web", True),
        ("k8s:tier=db", True),  # everything not excluded is kept
        ("k8s:io.kubernetes.pod.namespace=prod", True),  # include beats the io.kubernetes ignore
        ("k8s:io.kubernetes.pod.name=web-0", False),
        ("k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod", True),
        ("k8s:io.cilium.k8s.policy.serviceaccount=sa", True),
        ("k8s:io.cilium.k8s.policy.cluster=c1", True),
        ("k8s:app.kubernetes.io/name=shop", True),
        ("k8s:kubernetes.io/hostname=n1", False),
        ("k8s:beta.kubernetes.io/arch=amd64", False),
        ("k8s:node.beta.kubernetes.io/instance-type=x", False),
        ("k8s:k8s.io/x=y", False),
        ("k8s:topology.kubernetes.io/zone=a", False),
        ("k8s:statefulset.kubernetes.io/pod-name=web-0", False),
        ("k8s:apps.kubernetes.io/pod-index=0", False),
        ("k8s:batch.kubernetes.io/job-completion-index=1", False),
        ("k8s:batch.kubernetes.io/controller-uid=u", False),
        ("k8s:controller-uid=u", False),
        ("k8s:pod-template-generation=2", False),
        ("k8s:pod-template-hash=abc", False),
        ("k8s:controller-revision-hash=x", False),
        ("k8s:annotation.foo=bar", False),
        ("k8s:etcd_node=e1", False),
        ("reserved:host", True),
    ],
)
def test_default_filter(label: str, kept: bool) -> None:
    assert LabelFilter().relevant(Label.parse(label)) == kept


def test_user_include_switches_to_whitelist_but_keeps_ciliums_includes() -> None:
    only_app = LabelFilter.from_user(["k8s:app"])
    assert only_app.whitelist
    assert only_app.relevant(Label.parse("k8s:app=web"))
    assert not only_app.relevant(Label.parse("k8s:tier=db"))
    assert not only_app.relevant(Label.parse("cni:app=web"))  # the source must match
    assert only_app.relevant(Label.parse("k8s:io.kubernetes.pod.namespace=prod"))
    assert only_app.relevant(Label.parse("reserved:world"))


def test_user_ignore_longer_than_an_include_wins_only_by_length() -> None:
    # Upstream: a label is kept when the longest include match is longer than the shortest
    # ignore match; "!app.kubernetes.io/name" (23) beats the default include (16).
    no_name = LabelFilter.from_user(["!app\\.kubernetes\\.io/name"])
    assert not no_name.whitelist
    assert not no_name.relevant(Label.parse("k8s:app.kubernetes.io/name=shop"))
    assert no_name.relevant(Label.parse("k8s:app.kubernetes.io/part-of=shop"))
    # An include longer than a default ignore brings a label back.
    hostname = LabelFilter.from_user(["kubernetes\\.io/hostname"])
    assert hostname.relevant(Label.parse("k8s:kubernetes.io/hostname=n1"))
    assert not hostname.relevant(Label.parse("k8s:kubernetes.io/os=linux"))


def test_prefix_parsing() -> None:
    assert LabelPrefix.parse("k8s:!app") == LabelPrefix("app", "k8s", ignore=True)
    assert LabelPrefix.parse("!tier") == LabelPrefix("tier", "", ignore=True)
    with pytest.raises(ValueError, match="empty"):
        LabelPrefix.parse("k8s:")
    with pytest.raises(re.error):
        LabelPrefix.parse("app[")


def test_identity_labels_adds_synthetic_labels_sorted_and_drops_pod_name() -> None:
    labels = identity_labels(
        pod_labels={"app": "web", "io.kubernetes.pod.name": "web-0", "pod-template-hash": "x"},
        namespace="prod",
        namespace_labels={"kubernetes.io/metadata.name": "prod"},
    )
    assert [str(lb) for lb in labels] == [
        "k8s:app=web",
        "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod",
        "k8s:io.cilium.k8s.policy.cluster=default",
        "k8s:io.cilium.k8s.policy.serviceaccount=default",
        "k8s:io.kubernetes.pod.namespace=prod",
    ]
    assert all(lb.source == Source.K8S for lb in labels)
