"""End-to-end fixtures: a private PYLIUM_HOME per test so that labs never touch a user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PYLIUM = str(Path(sys.executable).with_name("pylium"))


class Cli:
    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "PYLIUM_STORE"}
        self.env["PYLIUM_HOME"] = str(home)
        self.home = home

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYLIUM, *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if check and result.returncode != 0:
            pytest.fail(f"pylium {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")
