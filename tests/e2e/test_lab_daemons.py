"""The lab's daemons refuse bad input at start-up: exit 1 with one line naming what is wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def daemons(store: str, config: Path, tmp_path: Path) -> dict[str, list[str]]:
    common = ["--store", store, "--config", str(config)]
    agent = [str(BIN / "pylium-agent"), "--node-name", "n1", "--node-ip", "192.168.250.11"]
    agent += [*common, "--state-dir", str(tmp_path / "n1")]
    return {"agent": agent, "operator": [str(BIN / "pylium-operator"), *common]}


@pytest.mark.parametrize("daemon", ["agent", "operator"])
def test_bad_store_url(tmp_path: Path, daemon: str) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}")
    result = run(daemons("zookeeper:127.0.0.1:2181", config, tmp_path)[daemon])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown store backend 'zookeeper'" in lines[0]


@pytest.mark.parametrize("daemon", ["agent", "operator"])
def test_bad_config(tmp_path: Path, daemon: str) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"ipam": "no-such-mode"}')
    store = f"local:{tmp_path / 'store.sqlite'}"
    result = run(daemons(store, config, tmp_path)[daemon])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ipam:") and "no-such-mode" in lines[0]


@pytest.mark.parametrize("daemon", ["agent", "operator"])
def test_missing_config_file(tmp_path: Path, daemon: str) -> None:
    store = f"local:{tmp_path / 'store.sqlite'}"
    result = run(daemons(store, tmp_path / "absent.json", tmp_path)[daemon])
    assert result.returncode == 1
    assert "absent.json" in result.stderr and len(result.stderr.strip().splitlines()) == 1
