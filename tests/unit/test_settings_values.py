"""Helm ``--set`` parsing and value merging follow Helm's strvals/values semantics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylium.base.errors import ConfigError
from pylium.core.settings import values as v


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a.b=c", {"a": {"b": "c"}}),
        ("a=1,b=2", {"a": 1, "b": 2}),
        ("name={a,b,c}", {"name": ["a", "b", "c"]}),
        ("name={}", {"name": [""]}),  # Helm's quirk: one empty string
        ("list[0]=foo,list[2]=bar", {"list": ["foo", None, "bar"]}),
        ("list[0].a=1,list[0].b=2", {"list": [{"a": 1, "b": 2}]}),
        ("nested[0][1]=x", {"nested": [[None, "x"]]}),
        ("a=b\\,c", {"a": "b,c"}),
        ("a\\.b=c", {"a.b": "c"}),
        ("t=TRUE,f=false,n=null", {"t": True, "f": False, "n": None}),
        (
            "zero=0,octal=012,neg=-5,plus=+5,big=99999999999999999999",
            {"zero": 0, "octal": "012", "neg": -5, "plus": 5, "big": "99999999999999999999"},
        ),
        ("empty=", {"empty": ""}),
        ("cidr=10.244.0.0/16", {"cidr": "10.244.0.0/16"}),
    ],
)
def test_set_parses_like_helm(expression: str, expected: dict[str, Any]) -> None:
    assert v.parse_set(expression) == expected


def test_set_string_keeps_strings() -> None:
    assert v.parse_set("a=true,b=12,c={1,null}", as_string=True) == {
        "a": "true",
        "b": "12",
        "c": ["1", "null"],
    }


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("a", 'key "a" has no value'),
        ("a=1,b", 'key "b" has no value'),
        ("a,b=1", "cannot end with ,"),
        ("a={x,y", "must terminate with '}'"),
        ("a[x]=1", "not an integer"),
        ("a[-1]=1", "negative"),
        ("a=1,a.b=2", '"a" is not a map'),
        ("a[0]x=1", "unexpected data at end of array index"),
    ],
)
def test_set_errors_name_the_expression(expression: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        v.parse_set(expression)
    assert fragment in str(err.value)
    assert err.value.key == expression and err.value.source == "--set"


def test_set_parses_into_existing_values_like_helm() -> None:
    base: dict[str, Any] = {"l": ["p", "q"], "m": {"x": 1}}
    v.parse_set_into(base, "l[1]=z,m.y=2")
    assert base == {"l": ["p", "z"], "m": {"x": 1, "y": 2}}


def test_merge_and_coalesce() -> None:
    defaults = {"a": {"b": 1, "c": 2}, "l": [1, 2], "keep": True}
    user = v.merge({"a": {"b": 10}, "l": [9]}, {"a": {"d": 4}, "keep": None})
    assert user == {"a": {"b": 10, "d": 4}, "l": [9], "keep": None}
    assert v.coalesce(defaults, user) == {"a": {"b": 10, "c": 2, "d": 4}, "l": [9]}


key_part = st.text(
    st.characters(codec="ascii", categories=("L", "N", "P", "S")), min_size=1, max_size=8
)
scalar = st.one_of(
    st.integers(min_value=1, max_value=2**40),
    st.booleans(),
    st.text(
        st.characters(codec="ascii", categories=("L", "N", "P", "S", "Zs")), max_size=12
    ).filter(lambda s: v.typed_value(s, as_string=False) == s and not s.startswith("{")),
)


def _nest(path: v.Path, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        return [None] * head + [_nest(rest, value)]
    return {head: _nest(rest, value)}


@given(
    parts=st.lists(st.one_of(key_part, st.integers(0, 3)), min_size=1, max_size=4).filter(
        lambda p: isinstance(p[0], str)
    ),
    value=st.one_of(scalar, st.lists(scalar, min_size=1, max_size=3)),
)
def test_set_round_trips_a_rendered_path(parts: list[str | int], value: Any) -> None:
    path = tuple(parts)
    assert v.parse_set(v.format_set(path, value)) == _nest(path, value)
    assert v.get(v.parse_set(v.format_set(path, value)), path) == value
