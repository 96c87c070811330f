"""``pylium config view/validate`` through typer's CliRunner, with real files in a temp dir."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from pylium.cli import config_cmd
from pylium.runtime import settings as runtime_settings

SEED_004_CONFIGMAP = """\
kind: ConfigMap
apiVersion: v1
metadata:
  name: cilium-config
  namespace: kube-system
data:
  ipam: "cluster-pool"
  cluster-pool-ipv4-cidr: "10.0.0.0/8"
  cluster-pool-ipv4-mask-size: "24"
"""


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """test root"""

    config_cmd.register(app)
    return app


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(_app(), ["config", *args])
    return result.exit_code, result.stdout, result.stderr


def test_view_prints_sorted_keys_with_sources(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("ipam:\n  operator:\n    clusterPoolIPv4MaskSize: 26\n")
    cm = tmp_path / "cm.yaml"
    cm.write_text(SEED_004_CONFIGMAP.replace('"24"', '"25"') + '  debug: "true"\n')
    code, out, err = _run(
        "view", "-f", str(values), "--set", "loadBalancer.algorithm=maglev", "--configmap", str(cm)
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    keys = [line.split()[0] for line in lines[1:]]
    assert keys == sorted(keys)
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[1:]}
    assert rows["bpf-lb-algorithm"] == ["maglev", "--set"]
    assert rows["cluster-pool-ipv4-mask-size"] == ["26", f"values file {values}"]
    assert rows["debug"] == ["true", f"configmap {cm}"]
    assert rows["tunnel-protocol"] == ["vxlan", "default"]


def test_view_json_and_yaml() -> None:
    code, out, _ = _run("view", "-o", "json", "--set", "cluster.name=lab")
    assert code == 0
    assert json.loads(out)["cluster-name"] == {"value": "lab", "source": "--set"}
    code, out, _ = _run("view", "-o", "yaml", "--set-string", "cluster.id=5")
    assert yaml.safe_load(out)["cluster-id"] == {"value": "5", "source": "--set-string"}


def test_bad_input_one_line_per_problem_nothing_on_stdout(tmp_path: Path) -> None:
    code, out, err = _run("view", "--set", "maglev.tableSize=100,loadBalancer.algoritm=maglev")
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("Error: --set: ") for line in lines)
    assert any('did you mean "loadBalancer.algorithm"' in line for line in lines)
    code, out, err = _run("validate", "-f", str(tmp_path / "missing.yaml"))
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: values file {tmp_path / 'missing.yaml'}: ")


def test_validate(tmp_path: Path) -> None:
    code, out, err = _run("validate", "--set", "ipam.operator.clusterPoolIPv4MaskSize=30")
    assert code == 0 and out.startswith("configuration is valid")
    assert "Warning: --set: cluster-pool-ipv4-mask-size: /30" in err
    code, out, err = _run("validate", "--set", "routingMode=native")
    assert code == 1 and out == "" and "ipv4-native-routing-cidr must be set" in err


def test_load_reads_every_configmap_shape(tmp_path: Path) -> None:
    doc = tmp_path / "cm.yaml"
    doc.write_text(SEED_004_CONFIGMAP)
    flat = tmp_path / "flat.conf"
    flat.write_text("# flat keys\nipam=cluster-pool\ncluster-pool-ipv4-mask-size=24\n")
    directory = tmp_path / "config-dir"
    directory.mkdir()
    (directory / "cluster-pool-ipv4-mask-size").write_text("24\n")
    for path in (doc, flat, directory):
        resolved = runtime_settings.load(configmap=path)
        assert resolved.settings.cluster_pool_ipv4_mask_size == 24
        assert resolved.sources["cluster-pool-ipv4-mask-size"] == f"configmap {path}"
