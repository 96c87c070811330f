"""L7: what every verb group shares: the store option and output helpers.

The store a command talks to is chosen by ``--store`` (on the root command), then
``$PYLIUM_STORE``, then the current lab (see :mod:`pylium.runtime.context`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
import yaml

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.runtime.context import resolve_store_url


def store_url(ctx: typer.Context) -> str:
    obj = ctx.find_root().obj
    explicit = obj.get("store") if isinstance(obj, dict) else None
    return resolve_store_url(explicit)


@contextmanager
def resource_client(ctx: typer.Context) -> Iterator[ResourceClient]:
    store = open_store(store_url(ctx))
    try:
        yield ResourceClient(store)
    finally:
        store.close()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Plain fixed-width columns like kubectl (no colours, so output stays scriptable)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for line in [list(headers), *[list(r) for r in rows]]:
        typer.echo("   ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def fail(lines: Sequence[str], code: int = 1) -> None:
    """Print one line per problem on stderr and exit non-zero."""
    for line in lines:
        print(f"Error: {line}", file=sys.stderr)
    raise typer.Exit(code)
