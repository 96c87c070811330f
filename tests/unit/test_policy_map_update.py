"""The order in which an endpoint's policy map is updated (adapters.maps.policy.update_order),
checked on every intermediate state without a kernel: nothing neither the old nor the new
map state allows is ever allowed, and for core-built (deny-preferred) states nothing both
allow is ever dropped. The lookup is the core's, which the datapath is tested to equal."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pylium.adapters.maps.policy import update_order
from pylium.core.policy.diff import diff
from pylium.core.policy.mapstate import MapEntry, MapState, PolicyKey, deny_preferred
from pylium.core.policy.peers import Direction, Origin

D = Direction.INGRESS
IDENTITIES = [0, 7, 8]
PACKETS = [(i, p, port) for i in (7, 8, 9) for p in (6, 17) for port in (0, 80, 81, 8080, 9000)]
ORIGIN = Origin()


@st.composite
def keys(draw: st.DrawFn) -> PolicyKey:
    ident = draw(st.sampled_from(IDENTITIES))
    proto = draw(st.sampled_from([0, 6, 17]))
    if proto == 0:
        return PolicyKey(D, ident)
    plen = draw(st.sampled_from([0, 3, 12, 16]))
    port = draw(st.sampled_from([0, 80, 8080, 9000]))
    shift = 16 - plen
    return PolicyKey(D, ident, proto, port >> shift << shift, plen)


@st.composite
def core_states(draw: st.DrawFn) -> MapState:
    allows = {k: {ORIGIN} for k in draw(st.sets(keys(), max_size=5))}
    denies = {k: {ORIGIN} for k in draw(st.sets(keys(), max_size=3))}
    return MapState(deny_preferred(allows, denies))


@st.composite
def any_states(draw: st.DrawFn) -> MapState:
    return MapState(draw(st.dictionaries(keys(), st.builds(MapEntry, st.booleans()), max_size=6)))


def allowed(state: MapState) -> set[tuple[int, int, int]]:
    out = set()
    for ident, proto, port in PACKETS:
        found = state.lookup(D, ident, proto, port)
        if found is not None and not found[1].deny:
            out.add((ident, proto, port))
    return out


def intermediates(old: MapState, new: MapState) -> list[MapState]:
    entries = dict(old.entries)
    out = []
    for key, entry in update_order(diff(old, new), old):
        if entry is None:
            del entries[key]
        else:
            entries[key] = entry
        out.append(MapState(dict(entries)))
    return out


@settings(max_examples=150, deadline=None)
@given(old=any_states(), new=any_states())
def test_never_allows_what_neither_state_allows(old: MapState, new: MapState) -> None:
    bound = allowed(old) | allowed(new)
    steps = intermediates(old, new)
    assert {k: e.deny for k, e in (steps[-1] if steps else old).entries.items()} == {
        k: e.deny for k, e in new.entries.items()
    }
    for step in steps:
        assert allowed(step) <= bound


@settings(max_examples=150, deadline=None)
@given(old=core_states(), new=core_states())
def test_core_states_never_drop_what_both_allow(old: MapState, new: MapState) -> None:
    both = allowed(old) & allowed(new)
    for step in intermediates(old, new):
        assert both <= allowed(step)
