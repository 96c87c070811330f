"""L3: layouts from an object's BTF.

Two readers: :func:`struct_layout` (member names, byte offsets and sizes of a struct, through
``bpftool btf dump -j``) lets tests check that each Python map wrapper agrees with the C
definition; :func:`datasec_vars` (through libbpf's btf__ API on an opened object) gives the
offsets of load-time constants in ``.rodata``, which libbpf only knows once the object is open.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
from pathlib import Path
from typing import Any

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

BTF_KIND_DATASEC = 15


def _types(obj: Path) -> dict[int, dict[str, Any]]:
    try:
        out = subprocess.run(
            ["bpftool", "-j", "btf", "dump", "file", str(obj)],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        raise DatapathError(str(obj), "read BTF", str(err)) from err
    return {t["id"]: t for t in json.loads(out.stdout)["types"]}


def _size(types: dict[int, dict[str, Any]], type_id: int) -> int:
    t = types[type_id]
    kind = t["kind"]
    if kind in ("INT", "STRUCT", "UNION", "ENUM"):
        return int(t["size"])
    if kind == "ARRAY":
        return int(t["nr_elems"]) * _size(types, t["type_id"])
    if kind in ("TYPEDEF", "VOLATILE", "CONST"):
        return _size(types, t["type_id"])
    raise DatapathError(str(type_id), "BTF size", f"unsupported kind {kind}")


def struct_layout(obj: Path, name: str) -> tuple[int, dict[str, tuple[int, int]]]:
    """(struct size, member -> (byte offset, byte size)) of ``struct name`` in ``obj``."""
    types = _types(obj)
    for t in types.values():
        if t["kind"] == "STRUCT" and t["name"] == name:
            members = {
                m["name"]: (m["bits_offset"] // 8, _size(types, m["type_id"])) for m in t["members"]
            }
            return int(t["size"]), members
    raise DatapathError(str(obj), "read BTF", f"no struct {name}")


class _BtfType(ctypes.Structure):
    """``struct btf_type``: name_off, info (vlen in the low 16 bits), size/type."""

    _fields_ = [
        ("name_off", ctypes.c_uint32),
        ("info", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
    ]


class _VarSecinfo(ctypes.Structure):
    """``struct btf_var_secinfo``, ``vlen`` of which follow a DATASEC's btf_type."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
    ]


def datasec_vars(btf: int | None, section: str) -> dict[str, tuple[int, int]]:
    """variable -> (byte offset, byte size) in ``section`` of an opened object's BTF
    (``bpf_object__btf``); empty when the object has no such section."""
    lib = libbpf.lib()
    type_id = lib.btf__find_by_name_kind(btf, section.encode(), BTF_KIND_DATASEC) if btf else -1
    if type_id < 0:
        return {}
    ptr = lib.btf__type_by_id(btf, type_id)
    datasec = _BtfType.from_address(ptr)
    infos = (_VarSecinfo * (datasec.info & 0xFFFF)).from_address(ptr + ctypes.sizeof(_BtfType))
    out: dict[str, tuple[int, int]] = {}
    for info in infos:
        var = _BtfType.from_address(lib.btf__type_by_id(btf, info.type))
        out[lib.btf__name_by_offset(btf, var.name_off).decode()] = (info.offset, info.size)
    return out
