"""Hubble flow filters survive the trip through their protobuf form, field by field."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pylium.adapters.hubbleapi.convert import filter_from_pb, filter_to_pb
from pylium.core.hubble.filters import FlowFilter
from pylium.core.hubble.flow import TrafficDirection, Verdict

_text = st.text(alphabet="abcdefghij0123456789./=:-", min_size=1, max_size=12)
_small = st.lists

filters = st.builds(
    FlowFilter,
    source_ip=_small(_text, max_size=2).map(tuple),
    destination_ip=_small(_text, max_size=2).map(tuple),
    source_pod=_small(_text, max_size=2).map(tuple),
    destination_pod=_small(_text, max_size=2).map(tuple),
    source_label=_small(_text, max_size=2).map(tuple),
    destination_label=_small(_text, max_size=2).map(tuple),
    source_identity=_small(st.integers(0, 2**24), max_size=2).map(tuple),
    destination_identity=_small(st.integers(0, 2**24), max_size=2).map(tuple),
    source_port=_small(st.integers(0, 65535), max_size=2).map(tuple),
    destination_port=_small(st.integers(0, 65535), max_size=2).map(tuple),
    verdict=_small(st.sampled_from(list(Verdict)), max_size=2).map(tuple),
    event_type=_small(st.integers(0, 255), max_size=2).map(tuple),
    protocol=_small(st.sampled_from(["tcp", "udp", "icmp"]), max_size=2).map(tuple),
    traffic_direction=_small(st.sampled_from(list(TrafficDirection)), max_size=2).map(tuple),
    reply=_small(st.booleans(), max_size=2).map(tuple),
    node_name=_small(_text, max_size=2).map(tuple),
)


@given(filters)
def test_filter_round_trips_through_protobuf(f: FlowFilter) -> None:
    assert filter_from_pb(filter_to_pb(f)) == f


def _one_value(field: dataclasses.Field[Any]) -> tuple[Any, ...]:
    special: dict[str, tuple[Any, ...]] = {
        "verdict": (Verdict.DROPPED,),
        "traffic_direction": (TrafficDirection.INGRESS,),
        "reply": (True,),
    }
    if field.name in special:
        return special[field.name]
    return (7,) if str(field.type).startswith("tuple[int") else ("x",)


def test_every_filter_field_reaches_the_protobuf() -> None:
    fields = dataclasses.fields(FlowFilter)
    pb = filter_to_pb(FlowFilter(**{field.name: _one_value(field) for field in fields}))
    for field in fields:
        assert len(getattr(pb, field.name)) == 1, field.name
