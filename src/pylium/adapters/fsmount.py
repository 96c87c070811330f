"""L3: kernel filesystems the datapath needs, mounted when missing and allowed: bpffs
(``bpf.autoMount.enabled``, pins outlive the agent) and cgroup v2 (``cgroup.autoMount.enabled``
at ``cgroup.hostRoot``, where socket-level programs attach and where the lab puts pods)."""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from pylium.base.errors import DatapathError


@dataclass(frozen=True, slots=True)
class KernelFs:
    fstype: str
    magic: int
    setting: str
    """The ConfigMap key that allows mounting it (named in errors)."""


BPFFS = KernelFs("bpf", 0xCAFE4A11, "bpf-auto-mount")
CGROUP2 = KernelFs("cgroup2", 0x63677270, "cgroup-auto-mount")

_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


def is_mounted(path: Path, fs: KernelFs) -> bool:
    """Whether ``path`` lies on a filesystem of this kind."""
    buf = _StatFs()
    if _libc.statfs(str(path).encode(), ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == fs.magic)


def ensure_mounted(root: Path, fs: KernelFs, *, auto_mount: bool = True) -> None:
    """Make sure ``root`` is on ``fs``, mounting it there when allowed."""
    if is_mounted(root, fs):
        return
    if not auto_mount:
        raise DatapathError(
            str(root), f"check {fs.fstype}", f"not a {fs.fstype} filesystem and {fs.setting} is off"
        )
    root.mkdir(parents=True, exist_ok=True)
    if _libc.mount(fs.fstype.encode(), str(root).encode(), fs.fstype.encode(), 0, None) != 0:
        error = ctypes.get_errno()
        if error == errno.EBUSY and is_mounted(root, fs):
            return  # another process (an agent starting beside this one) mounted it first
        raise DatapathError(str(root), f"mount {fs.fstype}", os.strerror(error))


def unmount(root: Path, fs: KernelFs) -> int:
    """Unmount every ``fs`` stacked on ``root`` (agents starting together may each have mounted
    it); returns how many were removed."""
    count = 0
    while is_mounted(root, fs) and count < 16:
        if _libc.umount2(str(root).encode(), 0) != 0:
            error = ctypes.get_errno()
            # Busy (a process still inside): detach it now, the kernel frees it when idle.
            if error != errno.EBUSY or _libc.umount2(str(root).encode(), MNT_DETACH) != 0:
                raise DatapathError(str(root), f"unmount {fs.fstype}", os.strerror(error))
        count += 1
    return count
