"""L7: ``pylium install bpffs-unit``: the systemd mount unit for the BPF filesystem."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pylium.core.systemd import bpffs_mount_unit, mount_unit_name

install_app = typer.Typer(help="Install host integration files.", no_args_is_help=True)


@install_app.command("bpffs-unit")
def bpffs_unit(
    path: Annotated[str, typer.Option("--path", help="Where bpffs is mounted.")] = "/sys/fs/bpf",
    unit_dir: Annotated[Path, typer.Option("--dir", help="systemd unit directory.")] = Path(
        "/etc/systemd/system"
    ),
    print_only: Annotated[bool, typer.Option("--print", help="Print, do not write.")] = False,
) -> None:
    """Write ``<escaped path>.mount`` (``sys-fs-bpf.mount``) so bpffs is mounted at boot."""
    content = bpffs_mount_unit(path)
    if print_only:
        typer.echo(content, nl=False)
        return
    unit_dir.mkdir(parents=True, exist_ok=True)
    target = unit_dir / mount_unit_name(path)
    target.write_text(content)
    typer.echo(f"wrote {target}; enable it with: systemctl enable --now {target.name}")


def register(app: typer.Typer) -> None:
    app.add_typer(install_app, name="install")
