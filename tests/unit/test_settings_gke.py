"""``gke.enabled``: kubernetes IPAM, native routing, endpoint routes, and the required
``ipv4-native-routing-cidr`` -- through the settings core and ``pylium config view``."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pylium.cli import config_cmd
from pylium.core.settings import resolve
from pylium.model.config import ConfigErrors, IPAMMode, RoutingMode


def _view(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """test root"""

    config_cmd.register(app)
    result = CliRunner().invoke(app, ["config", "view", *args])
    return result.exit_code, result.stdout, result.stderr


def test_gke_sets_kubernetes_ipam_native_routing_and_endpoint_routes() -> None:
    resolved = resolve(sets=["gke.enabled=true", "ipv4NativeRoutingCIDR=10.8.0.0/14"])
    s = resolved.settings
    assert s.ipam is IPAMMode.KUBERNETES
    assert s.routing_mode is RoutingMode.NATIVE
    assert s.enable_endpoint_routes
    assert str(s.ipv4_native_routing_cidr) == "10.8.0.0/14"
    assert resolved.sources["ipam"] == "--set"
    # An explicit ipam.mode does not win over gke.enabled (as the chart renders it).
    assert (
        resolve(
            sets=["gke.enabled=true", "ipam.mode=cluster-pool", "ipv4NativeRoutingCIDR=10.8.0.0/14"]
        ).settings.ipam
        is IPAMMode.KUBERNETES
    )


def test_gke_without_native_routing_cidr_names_the_key_and_the_trigger(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as err:
        resolve(sets=["gke.enabled=true"])
    keys = [e.key for e in err.value.errors]
    assert "ipv4-native-routing-cidr" in keys
    first = next(e for e in err.value.errors if e.key == "ipv4-native-routing-cidr")
    assert first.source == "--set"
    assert "gke.enabled" in first.message and "ipv4NativeRoutingCIDR" in first.message
    values = tmp_path / "gke.yaml"
    values.write_text("gke:\n  enabled: true\n")
    with pytest.raises(ConfigErrors) as err:
        resolve(values_files=[("gke.yaml", {"gke": {"enabled": True}})])
    assert any(e.source == "values file gke.yaml" for e in err.value.errors)


def test_gke_native_routing_cidr_may_come_from_the_configmap() -> None:
    resolved = resolve(
        sets=["gke.enabled=true"],
        configmap=("cm.yaml", {"ipv4-native-routing-cidr": "10.8.0.0/14"}),
    )
    assert str(resolved.settings.ipv4_native_routing_cidr) == "10.8.0.0/14"
    assert resolved.sources["ipv4-native-routing-cidr"] == "configmap cm.yaml"


def test_config_view_shows_what_gke_implies() -> None:
    code, out, err = _view(
        "--set", "gke.enabled=true", "--set", "ipv4NativeRoutingCIDR=10.8.0.0/14"
    )
    assert code == 0, err
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in out.splitlines()[1:]}
    assert rows["ipam"] == ["kubernetes", "--set"]
    assert rows["routing-mode"] == ["native", "--set"]
    assert rows["enable-endpoint-routes"] == ["true", "--set"]
    assert rows["ipv4-native-routing-cidr"] == ["10.8.0.0/14", "--set"]
    code, out, err = _view("--set", "gke.enabled=true")
    assert code == 1 and out == ""
    assert "Error: --set: ipv4-native-routing-cidr: ipv4-native-routing-cidr must be set" in err
