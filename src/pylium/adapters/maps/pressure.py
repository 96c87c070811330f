"""L3: how full the pinned BPF maps are (``cilium_bpf_map_pressure``): entries counted by
walking the keys, max entries from ``bpf_map_info``. Only keyed maps (hash, LRU, LPM, hash of
maps) are reported; arrays are always "full" and ring buffers have no entries."""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

_MAP_INFO_SIZE = 88
KEYED_TYPES = frozenset({1, 5, 9, 10, 11, 13})
"""HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE, HASH_OF_MAPS."""
MAX_WALK = 1 << 20


def map_info(fd: int) -> tuple[int, int, int]:
    """(map type, key size, max entries)."""
    info = ctypes.create_string_buffer(_MAP_INFO_SIZE)
    size = ctypes.c_uint32(_MAP_INFO_SIZE)
    libbpf.check(
        libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)), f"map fd {fd}", "info"
    )
    kind, _, key_size, _, max_entries = struct.unpack_from("=IIIII", info.raw, 0)
    return int(kind), int(key_size), int(max_entries)


def _count(fd: int, key_size: int) -> int:
    lib = libbpf.lib()
    prev: ctypes.Array[ctypes.c_char] | None = None
    nxt = ctypes.create_string_buffer(max(key_size, 1))
    count = 0
    while count < MAX_WALK:
        if lib.bpf_map_get_next_key(fd, prev, nxt) < 0:
            break
        count += 1
        prev, nxt = nxt, ctypes.create_string_buffer(max(key_size, 1))
    return count


def usage(path: Path) -> tuple[int, int] | None:
    """(entries, max entries) of the map pinned at ``path``; None when it is not a keyed map."""
    fd = libbpf.lib().bpf_obj_get(str(path).encode())
    if fd < 0:
        return None
    try:
        try:
            kind, key_size, max_entries = map_info(fd)
        except DatapathError:
            return None  # a pinned program, not a map
        if kind not in KEYED_TYPES:
            return None
        return _count(fd, key_size), max_entries
    finally:
        os.close(fd)


def pinned_usage(pin_dir: Path) -> dict[str, tuple[int, int]]:
    """Every keyed map pinned directly under ``pin_dir``: name -> (entries, max entries)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        names = sorted(p for p in pin_dir.iterdir() if p.is_file())
    except OSError:
        return out
    for path in names:
        got = usage(path)
        if got is not None:
            out[path.name] = got
    return out
