"""Bad input never crashes (issue 8): whatever a runtime puts in the CNI plugin's environment and
stdin, and whatever YAML a user applies, the answer is a structured error (a CNI error object
with a code and message; a ValidationError naming document and field) or a valid result, never
an unexpected exception. Hypothesis generates the inputs; the plugin is run in-process up to
the point where it would contact the agent (a socket path that does not exist)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylium.base.errors import ValidationError
from pylium.cni.main import run
from pylium.core.cni import CniError, parse_request
from pylium.model import codec

COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "BOGUS", ""]
text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
conf = st.fixed_dictionaries(
    {},
    optional={
        "cniVersion": st.sampled_from(["0.3.1", "0.4.0", "1.0.0", "1.1.0", "9.9.9", ""]) | text,
        "name": text,
        "type": st.just("cilium-cni") | text,
        "socket-path": st.just("/nonexistent/pylium-fuzz.sock"),
        "prevResult": json_values,
        "runtimeConfig": json_values,
    },
).map(lambda d: {**d, "socket-path": "/nonexistent/pylium-fuzz.sock"})
env = st.fixed_dictionaries(
    {"CNI_COMMAND": st.sampled_from(COMMANDS)},
    optional={
        "CNI_CONTAINERID": text,
        "CNI_NETNS": st.just("/nonexistent/netns") | text,
        "CNI_IFNAME": text,
        "CNI_ARGS": text,
        "CNI_PATH": text,
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=env, body=conf | json_values, raw=st.binary(max_size=64), use_raw=st.booleans())
def test_cni_plugin_answers_every_input_with_a_result_or_an_error_object(
    env: dict[str, str], body: Any, raw: bytes, use_raw: bool
) -> None:
    stdin = raw if use_raw else json.dumps(body).encode()
    code, answer = run(env, stdin)
    assert code in (0, 1)
    if code == 1:
        assert answer is not None and isinstance(answer["code"], int) and answer["msg"]
        assert "cniVersion" in answer
    try:
        parse_request(env, stdin)
    except CniError as err:
        assert err.code and str(err)


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=4),
    max_leaves=15,
)
KINDS = ["CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy", "Service", "Pod"]


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(KINDS), spec=documents, meta=documents)
def test_resources_are_accepted_or_refused_with_a_field_path(
    kind: str, spec: Any, meta: Any
) -> None:
    api = {"NetworkPolicy": "networking.k8s.io/v1", "Service": "v1", "Pod": "v1"}.get(
        kind, "cilium.io/v2"
    )
    body = {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}
    try:
        codec.validate(body, source="fuzz.yaml", document=0)
    except ValidationError as err:
        assert err.problems and all(str(loc) for loc, _ in err.problems)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300))
def test_yaml_text_is_parsed_or_refused(text: str) -> None:
    try:
        codec.parse_documents(text, "fuzz.yaml")
    except ValidationError as err:
        assert err.problems
