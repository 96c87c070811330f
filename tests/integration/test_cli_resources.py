"""The CLI end to end on a temporary SQLite store: apply, get, delete, and bad input.

Runs the installed ``pylium`` console script as a subprocess, the way a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PYLIUM = str(Path(sys.executable).with_name("pylium"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CNP = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: {name}
  namespace: {ns}
spec:
  endpointSelector:
    matchLabels:
      app: backend
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: frontend
      toPorts:
        - ports:
            - port: "{port}"
              protocol: TCP
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = dict(os.environ)
    out["PYLIUM_STORE"] = f"local:{tmp_path / 'store.db'}"
    out["PYLIUM_HOME"] = str(tmp_path / "home")
    return out


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYLIUM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_apply_get_delete_round_trip(env: dict[str, str]) -> None:
    first = run(env, "apply", "-f", str(EXAMPLES / "policy.yaml"))
    assert first.returncode == 0, first.stderr
    assert "ciliumnetworkpolicy.cilium.io/backend-from-frontend created" in first.stdout
    assert "networkpolicy.networking.k8s.io/allow-frontend created" in first.stdout

    again = run(env, "apply", "-f", str(EXAMPLES / "policy.yaml"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("unchanged") == 2

    table = run(env, "get", "cnp")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NAME", "AGE"]
    assert "backend-from-frontend" in table.stdout

    as_json = run(env, "get", "ciliumnetworkpolicies", "backend-from-frontend", "-o", "json")
    body = json.loads(as_json.stdout)
    assert body["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["port"] == "80"
    assert body["metadata"]["namespace"] == "default"
    assert int(body["metadata"]["resourceVersion"]) > 0

    changed = run(
        env,
        "apply",
        "-f",
        "-",
        stdin=CNP.format(name="backend-from-frontend", ns="default", port=8080),
    )
    assert "configured" in changed.stdout, changed.stderr
    body = json.loads(run(env, "get", "cnp", "backend-from-frontend", "-o", "json").stdout)
    assert body["spec"]["ingress"][0]["toPorts"][0]["ports"][0]["port"] == "8080"
    assert body["metadata"]["generation"] == 2

    gone = run(env, "delete", "cnp", "backend-from-frontend")
    assert gone.returncode == 0, gone.stderr
    missing = run(env, "get", "cnp", "backend-from-frontend")
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    again_gone = run(env, "delete", "cnp", "backend-from-frontend")
    assert again_gone.returncode == 1
    assert run(env, "delete", "cnp", "backend-from-frontend", "--ignore-not-found").returncode == 0


def test_bad_port_refused_naming_file_document_and_field(env: dict[str, str]) -> None:
    result = run(env, "apply", "-f", str(EXAMPLES / "bad-port.yaml"))
    assert result.returncode == 1
    assert "bad-port.yaml" in result.stderr
    assert "spec.ingress[0].toPorts[0].ports[0].port" in result.stderr
    assert "65535" in result.stderr
    listing = run(env, "get", "cnp", "-A", "-o", "json")
    assert json.loads(listing.stdout)["items"] == []


def test_one_bad_document_writes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    good = CNP.format(name="good", ns="default", port=80)
    bad = CNP.format(name="bad", ns="default", port=70000)
    path = tmp_path / "mixed.yaml"
    path.write_text(good + "---\n" + bad)
    result = run(env, "apply", "-f", str(path))
    assert result.returncode == 1
    assert "document 2" in result.stderr
    assert "document 1" not in result.stderr
    assert json.loads(run(env, "get", "cnp", "-A", "-o", "json").stdout)["items"] == []


def test_malformed_yaml_and_unknown_kind(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n")
    result = run(env, "apply", "-f", str(broken))
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr

    unknown = run(env, "get", "ciliumnetworkpolicys")
    assert unknown.returncode == 1
    assert "did you mean" in unknown.stderr


def test_short_names_and_cluster_scope(env: dict[str, str]) -> None:
    ccnp = """\
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: host-fw
spec:
  nodeSelector:
    matchLabels:
      kubernetes.io/hostname: n1
  ingress:
    - fromEntities: [cluster]
"""
    assert run(env, "apply", "-f", "-", stdin=ccnp).returncode == 0
    out = run(env, "get", "ccnp")
    assert "host-fw" in out.stdout
    assert "NAMESPACE" not in out.stdout


def test_no_store_selected_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYLIUM_STORE"}
    env["PYLIUM_HOME"] = str(tmp_path / "empty-home")
    result = run(env, "get", "cnp")
    assert result.returncode == 1
    assert "no store selected" in result.stderr
