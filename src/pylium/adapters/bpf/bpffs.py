"""L3: the BPF filesystem: mounted when missing (``bpf.autoMount.enabled``), checked otherwise
(see :mod:`pylium.adapters.fsmount`)."""

from __future__ import annotations

from pathlib import Path

from pylium.adapters import fsmount


def is_bpffs(path: Path) -> bool:
    return fsmount.is_mounted(path, fsmount.BPFFS)


def ensure_mounted(root: Path, *, auto_mount: bool = True) -> None:
    """Make sure ``root`` is on bpffs, mounting it when allowed."""
    fsmount.ensure_mounted(root, fsmount.BPFFS, auto_mount=auto_mount)
