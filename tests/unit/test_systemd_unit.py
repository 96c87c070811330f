"""The bpffs mount unit: systemd's name escaping and upstream's content; the CLI writes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pylium.core.systemd import bpffs_mount_unit, mount_unit_name


def test_unit_names_are_escaped_mount_paths() -> None:
    assert mount_unit_name("/sys/fs/bpf") == "sys-fs-bpf.mount"
    assert mount_unit_name("/run/my-bpf") == "run-my\\x2dbpf.mount"
    assert mount_unit_name("/") == "-.mount"


def test_unit_content() -> None:
    unit = bpffs_mount_unit("/sys/fs/bpf")
    assert "What=bpffs\nWhere=/sys/fs/bpf\nType=bpf\n" in unit
    assert "Options=rw,nosuid,nodev,noexec,relatime,mode=700" in unit
    assert "WantedBy=multi-user.target" in unit


def test_cli_writes_the_unit(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("pylium"))
    out = subprocess.run(
        [exe, "install", "bpffs-unit", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sys-fs-bpf.mount" in out.stdout
    assert (tmp_path / "sys-fs-bpf.mount").read_text() == bpffs_mount_unit()
