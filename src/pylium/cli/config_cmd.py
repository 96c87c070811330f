"""L7: ``pylium config view`` and ``pylium config validate``: the effective agent configuration.

Inputs mirror ``helm install`` (``-f values.yaml``, ``--set``, ``--set-string``) plus an optional
``--configmap`` (a ``cilium-config`` document, flat keys or a directory of key files). ``view``
prints every ``cilium-config`` key with its effective value and where it came from, like
``cilium config view``; ``validate`` only checks. Bad input: one ``Error:`` line per problem on
stderr, exit code 1, nothing on stdout. Warnings go to stderr.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import yaml

from pylium.base.errors import ConfigError
from pylium.core.settings import Resolved
from pylium.model.config import ConfigErrors
from pylium.runtime import settings as runtime_settings

config_app = typer.Typer(
    name="config",
    help="Show or check the effective agent configuration (cilium-config keys).",
    no_args_is_help=True,
)


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


ValuesOpt = Annotated[
    list[Path] | None,
    typer.Option("-f", "--values", help="Helm values file (repeatable; later files win)."),
]
SetStringOpt = Annotated[
    list[str] | None,
    typer.Option("--set-string", help="Like --set, but every value stays a string."),
]
ConfigMapOpt = Annotated[
    Path | None,
    typer.Option("--configmap", help="cilium-config ConfigMap YAML, flat key file or directory."),
]


def _load(
    values: list[Path] | None,
    sets: list[str] | None,
    set_strings: list[str] | None,
    configmap: Path | None,
) -> Resolved:
    """Resolve, or print one error line per problem and exit 1."""
    try:
        resolved = runtime_settings.load(values or [], sets or [], set_strings or [], configmap)
    except ConfigErrors as err:
        _fail(err.lines())
    except ConfigError as err:
        _fail([str(err)])
    for warning in resolved.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    return resolved


def _fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        print(f"Error: {line}", file=sys.stderr)
    raise typer.Exit(1)


def render_view(resolved: Resolved, output: Output) -> str:
    """The ``config view`` text: KEY VALUE SOURCE columns, or json/yaml key -> value/source."""
    rows = resolved.rows()
    if output is Output.TEXT:
        table = [("KEY", "VALUE", "SOURCE"), *rows]
        widths = [max(len(r[i]) for r in table) for i in range(2)]
        return "\n".join(
            f"{k.ljust(widths[0])}   {val.ljust(widths[1])}   {src}".rstrip()
            for k, val, src in table
        )
    data = {k: {"value": val, "source": src} for k, val, src in rows}
    if output is Output.JSON:
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False).rstrip("\n")


@config_app.command("view")
def view(
    values: ValuesOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Helm --set a.b=c[,d=e] (repeatable).")
    ] = None,
    set_string: SetStringOpt = None,
    configmap: ConfigMapOpt = None,
    output: Annotated[Output, typer.Option("-o", "--output", help="text, json or yaml.")] = (
        Output.TEXT
    ),
) -> None:
    """Print every cilium-config key with its effective value and its source, sorted by key."""
    resolved = _load(values, set_, set_string, configmap)
    typer.echo(render_view(resolved, output))


@config_app.command("validate")
def validate(
    values: ValuesOpt = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Helm --set a.b=c[,d=e] (repeatable).")
    ] = None,
    set_string: SetStringOpt = None,
    configmap: ConfigMapOpt = None,
) -> None:
    """Check the configuration only: exit 0 when valid, 1 with one line per problem."""
    resolved = _load(values, set_, set_string, configmap)
    changed = sum(1 for _, _, src in resolved.rows() if src != "default")
    typer.echo(f"configuration is valid ({changed} keys set, {len(resolved.warnings)} warnings)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(config_app, name="config")
