"""Datapath fixtures: the compiled objects, loaded with their maps pinned in a private
directory on bpffs (mounted when missing), removed afterwards."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from pylium.adapters.bpf import bpffs
from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject

BPFFS = Path("/sys/fs/bpf")


@pytest.fixture(scope="session")
def lxc_object() -> Path:
    return build("bpf_lxc")


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    bpffs.ensure_mounted(BPFFS)
    path = BPFFS / f"pylium-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def load_lxc(lxc_object: Path, pin_dir: Path) -> Iterator[Callable[[Mapping[str, int]], BpfObject]]:
    """Loads bpf_lxc with the given load-time constants; unloaded at teardown."""
    loaded: list[BpfObject] = []

    def load(constants: Mapping[str, int]) -> BpfObject:
        loaded.append(BpfObject(lxc_object, pin_dir, constants=constants).load())
        return loaded[-1]

    yield load
    for obj in loaded:
        obj.close()


@pytest.fixture
def lxc(load_lxc: Callable[[Mapping[str, int]], BpfObject]) -> BpfObject:
    return load_lxc({})


@pytest.fixture
def overlay(lxc: BpfObject, pin_dir: Path) -> Iterator[BpfObject]:
    """bpf_overlay built with a stand-in for bpf_skb_get_tunnel_key (bpf/tests/): the tunnel
    ID is read from skb->mark, since a test run cannot carry tunnel metadata. Loaded after
    bpf_lxc with the same pins, so the two share their maps as on a node."""
    obj = BpfObject(build("tests/overlay_tunnel_mark"), pin_dir).load()
    yield obj
    obj.close()
