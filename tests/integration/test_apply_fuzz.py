"""Bad policy and Service YAML through ``pylium apply`` (issue 8), the CLI path a user takes:
hypothesis mutates one field of a valid CiliumNetworkPolicy, NetworkPolicy or Service (another
value of any type, huge numbers, unicode, the field removed, an unknown field added) or the
YAML text itself, and runs ``pylium apply -f FILE`` on a SQLite store. Either the document is
accepted (exit 0, and it is in the store) or the command fails with a non-zero exit, an error
that names the file and the document (and, for a bad field, its path or a parent's), and the
store holds nothing it did not hold before. The CLI runs in-process (its ``main``), a fresh
store per example (the command tree is built once, as :func:`pylium.cli.app.main` would
build it per process)."""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylium.adapters.store import open_store
from pylium.base.errors import PyliumError, format_path
from pylium.cli.app import app

Path_ = tuple[str | int, ...]

DOCUMENTS: list[dict[str, Any]] = [
    {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {
                    "fromEndpoints": [{"matchLabels": {"app": "client"}}],
                    "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}],
                }
            ],
            "egress": [{"toCIDR": ["10.1.0.0/16"]}, {"toEntities": ["world"]}],
        },
    },
    {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                    "ports": [{"port": 5432, "protocol": "TCP"}],
                }
            ],
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    },
]


def paths_of(value: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(paths_of(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(paths_of(item, (*prefix, i)))
    return out


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**30, -1, 0, 65536, 2**32, "", "ü", "0x50", "80-90", "a" * 300])
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=5,
)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[int, str, Path_, str]:
    """(document index, how, the path changed, the YAML text)."""
    index = draw(st.integers(0, len(DOCUMENTS) - 1))
    doc = copy.deepcopy(DOCUMENTS[index])
    path = draw(st.sampled_from(paths_of(doc)))
    *parent_path, last = path
    parent: Any = doc
    for part in parent_path:
        parent = parent[part]
    how = draw(st.sampled_from(["replace", "remove", "add", "text"]))
    if how == "replace":
        parent[last] = draw(values)
    elif how == "remove":
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last][draw(st.text(min_size=1, max_size=8))] = draw(values)
    text = yaml.safe_dump(doc, allow_unicode=True)
    if how == "text":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(min_size=1, max_size=4)) + text[at:]
    return index, how, path, text


def test_apply_accepts_or_names_file_document_and_field(capsys: pytest.CaptureFixture[str]) -> None:
    command = typer.main.get_command(app)

    def pylium(*argv: str) -> int:
        """``pylium ARGV`` as the console script runs it: the exit code."""
        try:
            command.main(list(argv), standalone_mode=True)
        except SystemExit as exit:
            return int(exit.code or 0)
        except PyliumError as err:  # what main() prints
            print(f"Error: {err}", file=sys.stderr)
            return 1
        return 0

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutation=mutations())
    def one(mutation: tuple[int, str, Path_, str]) -> None:
        index, how, path, text = mutation
        with tempfile.TemporaryDirectory() as tmp:
            url = f"local:{Path(tmp) / 'store.db'}"
            file = Path(tmp) / "fuzz.yaml"
            file.write_text(text)
            capsys.readouterr()
            code = pylium("--store", url, "apply", "-f", str(file))
            out, err = capsys.readouterr()
            store = open_store(url)
            try:
                kinds = {kv.key.split("/")[1] for kv in store.list("resources/").items}
            finally:
                store.close()
            if code == 0:
                assert kinds == {DOCUMENTS[index]["kind"]}, (out, err)
                return
            assert code == 1, (code, out, err)
            assert kinds == set(), f"a refused apply wrote {kinds}"
            assert "fuzz.yaml" in err, err
            if how in ("replace", "remove") and "document" in err:
                named = [format_path(path[:n]) for n in range(1, len(path) + 1)]
                assert any(p in err for p in named) or "apiVersion" in err or "kind" in err, (
                    path,
                    err,
                )

    one()
