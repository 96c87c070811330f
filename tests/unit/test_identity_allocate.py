"""Identity allocation decisions and numeric scopes: same labels -> same number, new labels
-> the lowest free number of the cluster's range, never one already in use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylium.base.errors import AllocationError
from pylium.core.identity.allocate import decide, lowest_free_in, lowest_free_local
from pylium.core.identity.labels import Label
from pylium.core.identity.numeric import (
    LOCAL_SCOPE,
    Scope,
    cluster_id_of,
    cluster_range,
    local_range,
    scope_of,
)

WEB = (Label("k8s", "app", "web"), Label("k8s", "io.kubernetes.pod.namespace", "prod"))


def test_decide_reuses_existing_and_takes_lowest_free_for_new() -> None:
    first = decide(WEB, {})
    assert (first.identity, first.new) == (256, True)
    existing = {first.key: 256}
    again = decide(reversed(WEB), existing)
    assert (again.identity, again.new, again.key) == (256, False, first.key)
    other = decide([Label("k8s", "app", "db")], existing, also_used={257})
    assert (other.identity, other.new) == (258, True)
    assert decide(WEB, {}, cluster_id=3).identity == 3 << 16


def test_ranges_scopes_and_extended_cluster_mesh() -> None:
    assert cluster_range(0, max_connected_clusters=511) == range(256, 1 << 15)
    assert cluster_range(511, max_connected_clusters=511) == range(511 << 15, 512 << 15)
    with pytest.raises(AllocationError, match="255 or 511"):
        cluster_range(1, max_connected_clusters=300)
    assert cluster_id_of((7 << 16) | 42) == 7 and cluster_id_of(300) == 0
    assert scope_of(LOCAL_SCOPE | 5) is Scope.LOCAL and scope_of(2 << 24) is Scope.REMOTE_NODE
    with pytest.raises(AllocationError, match="unknown scope"):
        scope_of(3 << 24)
    assert local_range()[0] == 16777217 and local_range()[-1] == 33554431
    assert lowest_free_local({16777217, 16777218}) == 16777219
    with pytest.raises(AllocationError, match="no free security identity"):
        lowest_free_in(range(256, 258), {256, 257})
    assert lowest_free_in(range(256, 300), {257}, after=256) == 258


label_sets = st.frozensets(
    st.builds(
        Label, st.just("k8s"), st.sampled_from(["app", "tier", "team"]), st.text("ab", max_size=2)
    ),
    min_size=1,
    max_size=3,
)


@given(st.lists(label_sets, max_size=25))
def test_replaying_decisions_is_deterministic_and_injective(sets: list[frozenset[Label]]) -> None:
    by_key: dict[str, int] = {}
    seen: dict[frozenset[Label], int] = {}
    for labels in sets:
        decision = decide(labels, by_key)
        if labels in seen:
            assert not decision.new and decision.identity == seen[labels]
        else:
            assert decision.new and decision.identity not in by_key.values()
            used = set(by_key.values())
            assert decision.identity == next(i for i in range(256, 65536) if i not in used)
            by_key[decision.key] = decision.identity
            seen[labels] = decision.identity
