"""Datapath fixtures: the compiled bpf_lxc object, loaded with its maps pinned in a private
directory on bpffs (mounted when missing), removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject

BPFFS = Path("/sys/fs/bpf")


def ensure_bpffs() -> None:
    out = subprocess.run(["stat", "-f", "-c", "%T", str(BPFFS)], capture_output=True, text=True)
    if out.stdout.strip() != "bpf_fs":
        subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], check=True)


@pytest.fixture(scope="session")
def lxc_object() -> Path:
    return build("bpf_lxc")


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    ensure_bpffs()
    path = BPFFS / f"pylium-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lxc(lxc_object: Path, pin_dir: Path) -> Iterator[BpfObject]:
    with BpfObject(lxc_object, pin_dir) as obj:
        yield obj
