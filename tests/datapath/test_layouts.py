"""Every map wrapper's layout equals the C struct in the compiled objects' BTF (names, byte
offsets, sizes): the layout is defined once per language and the two cannot drift. Layouts
are discovered from the modules of pylium.adapters.maps, so a new wrapper is checked too; each
is compared with the first object (bpf_lxc, then bpf_sock) that defines the struct."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import pylium.adapters.maps
from pylium.adapters.bpf.btf import struct_layout
from pylium.adapters.bpf.build import build
from pylium.adapters.maps.base import Layout
from pylium.base.errors import DatapathError


def _layouts() -> list[Layout]:
    found: dict[str, Layout] = {}
    for info in pkgutil.iter_modules(pylium.adapters.maps.__path__):
        module = importlib.import_module(f"pylium.adapters.maps.{info.name}")
        for value in vars(module).values():
            # scalar keys/values (__u32, __u64) have no struct to compare with
            if isinstance(value, Layout) and not value.c_name.startswith("__"):
                found[value.c_name] = value
    return sorted(found.values(), key=lambda layout: layout.c_name)


LAYOUTS = _layouts()


def test_every_map_struct_is_covered() -> None:
    assert {layout.c_name for layout in LAYOUTS} >= {
        "ipcache_key",
        "remote_endpoint_info",
        "endpoint_key",
        "endpoint_info",
        "ipv4_ct_tuple",
        "ct_entry",
        "metrics_key",
        "metrics_value",
        "node_config",
        "flow_event",
        "policy_key",
        "policy_entry",
        "lb4_key",
        "lb4_service",
        "lb4_backend",
        "lb4_reverse_nat",
        "ipv4_revnat_tuple",
        "ipv4_revnat_entry",
        "lb4_affinity_key",
        "lb_affinity_val",
        "lb_affinity_match",
        "ipv4_nat_entry",
    }


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.c_name)
def test_layout_matches_btf(lxc_object: Path, layout: Layout) -> None:
    for obj in (lxc_object, build("bpf_sock")):
        try:
            size, members = struct_layout(obj, layout.c_name)
            break
        except DatapathError:
            continue
    else:
        pytest.fail(f"no object defines struct {layout.c_name}")
    assert layout.size == size
    assert layout.offsets() == members
