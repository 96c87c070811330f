"""L3: struct layouts from an object's BTF (via ``bpftool btf dump -j``): member names, byte
offsets and sizes, to check that each Python map wrapper agrees with the C definition."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pylium.base.errors import DatapathError


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
