"""L7: the root of the ``pylium`` CLI; each verb group lives in its own module and registers here.

Errors: any :class:`~pylium.base.errors.PyliumError` escaping a command is printed as one line
per problem on stderr with exit code 1 (usage errors exit 2, as click does).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pylium import __version__
from pylium.base.errors import PyliumError
from pylium.cli import (
    bpf_cmd,
    config_cmd,
    connectivity_cmd,
    endpoint_cmd,
    hubble_cmd,
    identity_cmd,
    install_cmd,
    ipam_cmd,
    lab_cmd,
    metrics_cmd,
    observe_cmd,
    policy_cmd,
    resources_cmd,
    service_cmd,
    status_cmd,
)

app = typer.Typer(
    name="pylium",
    help="pylium: Cilium's networking, policy and observability on a Python control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            envvar="PYLIUM_STORE",
            help="Store URL (local:PATH or etcd:URL); default: the current lab.",
        ),
    ] = None,
) -> None:
    """pylium: Cilium's networking, policy and observability on a Python control plane."""
    ctx.obj = {"store": store}


@app.command()
def version() -> None:
    """Print the pylium version."""
    typer.echo(f"pylium {__version__}")


resources_cmd.register(app)
config_cmd.register(app)
lab_cmd.register(app)
ipam_cmd.register(app)
identity_cmd.register(app)
endpoint_cmd.register(app)
install_cmd.register(app)
status_cmd.register(app)
policy_cmd.register(app)
bpf_cmd.register(app)
service_cmd.register(app)
connectivity_cmd.register(app)
observe_cmd.register(app)
hubble_cmd.register(app)
metrics_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except PyliumError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(1)
