"""Label selector matching over identity labels with sources (core.selectors)."""

from __future__ import annotations

import pytest

from pylium.core.selectors import LabelSet, matches, parse_selector_text
from pylium.model.policy import LabelSelector, Operator, Requirement, parse_selector

WEB = ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=prod", "k8s:tier=front"]


def sel(raw: dict[str, object]) -> LabelSelector:
    return parse_selector(raw)


def test_empty_selector_selects_everything() -> None:
    assert matches(LabelSelector(), WEB)
    assert matches(LabelSelector(), [])


def test_key_without_source_matches_any_source() -> None:
    assert matches(sel({"matchLabels": {"app": "web"}}), WEB)
    assert matches(sel({"matchLabels": {"app": "web"}}), ["cni:app=web"])
    assert not matches(sel({"matchLabels": {"app": "db"}}), WEB)


def test_explicit_source_matches_only_that_source() -> None:
    assert matches(sel({"matchLabels": {"k8s:app": "web"}}), WEB)
    assert not matches(sel({"matchLabels": {"k8s:app": "web"}}), ["cni:app=web"])
    assert matches(sel({"matchLabels": {"reserved:host": ""}}), ["reserved:host"])
    assert not matches(sel({"matchLabels": {"reserved:host": ""}}), ["k8s:host"])


@pytest.mark.parametrize(
    ("op", "values", "labels", "expected"),
    [
        (Operator.IN, ("web", "db"), WEB, True),
        (Operator.IN, ("db",), WEB, False),
        (Operator.IN, ("web",), [], False),
        (Operator.NOT_IN, ("db",), WEB, True),
        (Operator.NOT_IN, ("web",), WEB, False),
        (Operator.NOT_IN, ("web",), [], True),
        (Operator.EXISTS, (), WEB, True),
        (Operator.EXISTS, (), [], False),
        (Operator.DOES_NOT_EXIST, (), WEB, False),
        (Operator.DOES_NOT_EXIST, (), [], True),
    ],
)
def test_match_expressions(
    op: Operator, values: tuple[str, ...], labels: list[str], expected: bool
) -> None:
    selector = LabelSelector((), (Requirement("any:app", op, values),))
    assert matches(selector, labels) is expected


def test_all_terms_must_match() -> None:
    s = sel(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["back"]}],
        }
    )
    assert not matches(s, WEB)
    assert matches(s, ["k8s:app=web", "k8s:tier=back"])


def test_label_set_values_by_source() -> None:
    lset = LabelSet.parse(["k8s:app=web", "cni:app=other", "reserved:host"])
    assert sorted(lset.values("any:app")) == ["other", "web"]
    assert lset.values("k8s:app") == ("web",)
    assert lset.has("reserved:host")
    assert lset.keys_of_source("reserved") == ("host",)


def test_selectors_compare_equal_whatever_the_order() -> None:
    a = sel({"matchLabels": {"a": "1", "b": "2"}})
    b = sel({"matchLabels": {"b": "2", "a": "1"}})
    assert a == b and hash(a) == hash(b)


def test_selector_text() -> None:
    s = parse_selector_text("app=web, k8s:tier=front, !legacy")
    assert matches(s, WEB)
    assert not matches(s, [*WEB, "k8s:legacy=yes"])
    assert str(s) == "{any:app=web, k8s:tier=front, any:legacy DoesNotExist}"
