"""L7: ``pylium hubble ...``: ``hubble ui`` serves the Hubble UI for a lab (service map, live
flow table with filters, the deciding policy of a flow) on :12000, reading every node's agent
(:mod:`pylium.lab.hubble_ui`); it runs in the foreground until interrupted."""

from __future__ import annotations

import threading
import time
from typing import Annotated

import typer

from pylium.cli.common import fail
from pylium.lab import cluster, hubble_ui

hubble_app = typer.Typer(help="Hubble: the UI (flows are shown by `pylium observe`).")


@hubble_app.command("ui")
def ui(
    lab: Annotated[str | None, typer.Option("--lab", help="Default: the current lab.")] = None,
    port: Annotated[int, typer.Option("--port", help="Hubble UI's port.")] = hubble_ui.DEFAULT_PORT,
    address: Annotated[
        str, typer.Option("--address", help="Where to listen (only this machine by default).")
    ] = "127.0.0.1",
    duration: Annotated[
        float, typer.Option("--duration", help="Stop after N seconds (tests).", hidden=True)
    ] = 0.0,
) -> None:
    """Serve the Hubble UI of a lab: service map, live flows, deciding policies."""
    name = lab or cluster.current_lab()
    if name is None:
        fail(["no current lab: run `pylium lab up` or pass --lab"])
    assert name is not None
    stop = threading.Event()
    try:
        server = hubble_ui.serve(name, host=address, port=port, stop=stop)
    except OSError as err:
        fail([f"cannot listen on {address}:{port}: {err}"])
        raise
    if not (hubble_ui.vendor_dir() / hubble_ui.VENDOR_FILES["cytoscape.min.js"]).exists():
        typer.echo("warning: cytoscape not installed (run `make setup`): no service map", err=True)
    typer.echo(f"Hubble UI for lab {name} on http://{address}:{port}/", err=True)
    try:
        deadline = time.monotonic() + duration if duration else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def register(app: typer.Typer) -> None:
    app.add_typer(hubble_app, name="hubble")
