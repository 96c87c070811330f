"""Every map wrapper's layout equals the C struct in the compiled object's BTF (names, byte
offsets, sizes): the layout is defined once per language and the two cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylium.adapters.bpf.btf import struct_layout
from pylium.adapters.maps import config, endpoints, events, ipcache, metrics
from pylium.adapters.maps.base import Layout

LAYOUTS = [
    config.VALUE,
    ipcache.KEY,
    ipcache.VALUE,
    endpoints.KEY,
    endpoints.VALUE,
    metrics.KEY,
    metrics.VALUE,
    events.EVENT,
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.c_name)
def test_layout_matches_btf(lxc_object: Path, layout: Layout) -> None:
    size, members = struct_layout(lxc_object, layout.c_name)
    assert layout.size == size
    assert layout.offsets() == members
