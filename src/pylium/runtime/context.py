"""L4: which store the CLI and daemons talk to, the way kubectl picks its current context.

Order: an explicit ``--store`` value, then ``$PYLIUM_STORE``, then the current context file
written by ``pylium lab up`` (``$PYLIUM_HOME/current-context``, default ``/run/pylium``).
A store URL is ``local:/path/to/db.sqlite`` or ``etcd:http://127.0.0.1:2379[,http://...]``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pylium.base.errors import ConfigError

ENV_STORE = "PYLIUM_STORE"
ENV_HOME = "PYLIUM_HOME"
DEFAULT_HOME = "/run/pylium"


def home() -> Path:
    """The directory holding pylium's run-time state (labs, current context)."""
    return Path(os.environ.get(ENV_HOME, DEFAULT_HOME))


def context_file() -> Path:
    return home() / "current-context"


def set_current(store_url: str) -> None:
    """Make ``store_url`` the default store for later commands (atomic write)."""
    path = context_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(store_url + "\n")
    tmp.replace(path)


def clear_current(store_url: str | None = None) -> None:
    """Forget the current context (only if it still points at ``store_url`` when given)."""
    path = context_file()
    try:
        current = path.read_text().strip()
    except FileNotFoundError:
        return
    if store_url is None or current == store_url:
        path.unlink(missing_ok=True)


def resolve_store_url(explicit: str | None = None) -> str:
    """The store URL to use, or ConfigError saying how to choose one."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_STORE)
    if env:
        return env
    try:
        current = context_file().read_text().strip()
    except FileNotFoundError:
        current = ""
    if current:
        return current
    raise ConfigError(
        "store",
        "no store selected: run `pylium lab up`, pass --store local:PATH|etcd:URL, "
        f"or set ${ENV_STORE}",
    )
