"""L2: systemd units pylium can install: the BPF filesystem mount (``sys-fs-bpf.mount``).

The unit's name must be the escaped mount path (systemd.unit(5)): ``/sys/fs/bpf`` becomes
``sys-fs-bpf.mount``. The content is upstream's; the seed's copy has two typos (``what=bpfss``
and ``wantedBy``) that systemd would reject or ignore, so the correct keys are used.
"""

from __future__ import annotations


def _escape(component: str) -> str:
    out = []
    for i, ch in enumerate(component):
        if ch.isalnum() or ch in ":_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out)


def mount_unit_name(path: str) -> str:
    """``systemd-escape --path --suffix=mount``."""
    parts = [p for p in path.strip("/").split("/") if p]
    return ("-".join(_escape(p) for p in parts) or "-") + ".mount"


def bpffs_mount_unit(path: str = "/sys/fs/bpf") -> str:
    return (
        "[Unit]\n"
        "Description=Cilium BPF mounts\n"
        "Documentation=https://docs.cilium.io/\n"
        "DefaultDependencies=no\n"
        "Before=local-fs.target umount.target\n"
        "After=swap.target\n"
        "\n"
        "[Mount]\n"
        "What=bpffs\n"
        f"Where={path}\n"
        "Type=bpf\n"
        "Options=rw,nosuid,nodev,noexec,relatime,mode=700\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
