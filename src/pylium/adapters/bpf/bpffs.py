"""L3: the BPF filesystem: mounted when missing (``bpf.autoMount.enabled``), checked otherwise."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from pylium.base.errors import DatapathError

BPF_FS_MAGIC = 0xCAFE4A11


def is_bpffs(path: Path) -> bool:
    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]

    buf = StatFs()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(str(path).encode(), ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC)


def ensure_mounted(root: Path, *, auto_mount: bool = True) -> None:
    """Make sure ``root`` is on bpffs, mounting it when allowed."""
    if is_bpffs(root):
        return
    if not auto_mount:
        raise DatapathError(
            str(root), "check bpffs", "not a BPF filesystem and bpf-auto-mount is off"
        )
    root.mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpf", str(root).encode(), b"bpf", 0, None) != 0:
        raise DatapathError(str(root), "mount bpffs", os.strerror(ctypes.get_errno()))
