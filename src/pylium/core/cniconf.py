"""L2: the CNI configuration file the agent installs, as upstream renders it, and which other
files ``cni-exclusive`` sets aside. Pure: the agent's adapter does the file I/O.

Upstream writes ``05-cilium.conflist`` (network ``cilium``, one plugin ``cilium-cni``) only once
the agent is ready; chaining mode ``portmap`` appends the reference portmap plugin; a
``read-cni-conf`` file is written verbatim; ``custom-cni-conf`` writes nothing. With
``cni-exclusive`` every other ``*.conf``, ``*.conflist`` and ``*.json`` in the directory is
renamed to ``<name>.cilium_bak``; a legacy ``05-cilium.conf`` always is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CNI_VERSION = "0.3.1"
BACKUP_SUFFIX = ".cilium_bak"
CONFIG_SUFFIXES = (".conf", ".conflist", ".json")
LEGACY_NAME = "05-cilium.conf"


@dataclass(frozen=True, slots=True)
class CniConfPlan:
    content: str | None
    """What to write (None: write nothing, the user manages the file)."""
    renames: tuple[tuple[str, str], ...]
    """(old name, new name) in the config directory."""


def render(
    *,
    chaining_mode: str = "none",
    log_file: str = "",
    debug: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The conflist for a chaining mode (``none`` or ``portmap``); ``extra`` adds keys to the
    cilium-cni entry (pylium adds ``socket-path``)."""
    plugin: dict[str, Any] = {"type": "cilium-cni", "enable-debug": debug}
    if log_file:
        plugin["log-file"] = log_file
    plugin.update(extra or {})
    if chaining_mode == "portmap":
        plugins = [plugin, {"type": "portmap", "capabilities": {"portMappings": True}}]
        name = "portmap"
    else:
        plugins = [plugin]
        name = "cilium"
    return (
        json.dumps({"cniVersion": CNI_VERSION, "name": name, "plugins": plugins}, indent=2) + "\n"
    )


def plan(
    *,
    target_name: str,
    existing: Iterable[str],
    custom: bool,
    exclusive: bool,
    generated: str,
    read_conf: str | None = None,
) -> CniConfPlan:
    """What to write and which files to set aside in the CNI config directory."""
    content = None if custom else (read_conf if read_conf is not None else generated)
    renames = []
    for name in sorted(existing):
        if name == target_name or name.endswith(BACKUP_SUFFIX):
            continue
        if name == LEGACY_NAME or (exclusive and name.endswith(CONFIG_SUFFIXES)):
            renames.append((name, name + BACKUP_SUFFIX))
    return CniConfPlan(content, tuple(renames))
