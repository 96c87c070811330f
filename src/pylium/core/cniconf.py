"""L2: the CNI configuration file the agent installs, as upstream renders it, and which other
files ``cni-exclusive`` sets aside. Pure: the agent's adapter does the file I/O.

Upstream writes ``05-cilium.conflist`` (network ``cilium``, one plugin ``cilium-cni``) only once
the agent is ready; chaining mode ``portmap`` appends the reference portmap plugin; a
``read-cni-conf`` file is written verbatim; ``custom-cni-conf`` writes nothing. With
``cni-exclusive`` every other ``*.conf``, ``*.conflist`` and ``*.json`` in the directory is
renamed to ``<name>.cilium_bak``; a legacy ``05-cilium.conf`` always is.

pylium adds ``cni-chained-plugins``: reference plugins (``portmap``, ``bandwidth``) appended
after cilium-cni, each declaring the capability the runtime fills in (``portMappings``,
``bandwidth``), so that hostPorts and traffic shaping work without a hand-written conflist.
With kube-proxy replacement and no portmap in the chain, cilium-cni itself declares
``portMappings``: the agent serves hostPorts from the load-balancer maps (no chaining needed,
as upstream with kube-proxy replacement, which reads them from the Pod spec instead).
With ``cni-install`` the agent puts the executable named by the conflist's ``type``
(``cilium-cni``) into the CNI bin directory: :func:`plugin_wrapper` is its content.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CNI_VERSION = "0.3.1"
"""Upstream's conflists say 0.3.1, where runtimes never call CHECK."""
CHAINED_CNI_VERSION = "1.0.0"
"""With ``cni-chained-plugins`` pylium writes 1.0.0, so that CHECK runs through the chain
(libcni and the reference plugins refuse CHECK below 0.4.0)."""
BACKUP_SUFFIX = ".cilium_bak"
CONFIG_SUFFIXES = (".conf", ".conflist", ".json")
LEGACY_NAME = "05-cilium.conf"
PLUGIN_TYPE = "cilium-cni"
"""The conflist's ``type``, hence the executable's name in the CNI bin directory."""
CHAINED_CAPABILITIES: Mapping[str, Mapping[str, bool]] = {
    "portmap": {"portMappings": True},
    "bandwidth": {"bandwidth": True},
}
"""Reference plugins pylium chains after cilium-cni, with the capabilities they declare."""


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
    chained_plugins: Sequence[str] = (),
    host_ports: bool = False,
) -> str:
    """The conflist for a chaining mode (``none`` or ``portmap``); ``extra`` adds keys to the
    cilium-cni entry (pylium adds ``socket-path``); ``chained_plugins`` (keys of
    :data:`CHAINED_CAPABILITIES`) follow cilium-cni in order. Mode ``portmap`` names the network
    ``portmap`` and puts portmap first, as upstream does; otherwise the network is ``cilium``.
    The spec version is upstream's 0.3.1, or 1.0.0 when ``chained_plugins`` are asked for.
    ``host_ports`` (kube-proxy replacement): cilium-cni declares ``portMappings`` unless
    portmap is in the chain (it would DNAT the same ports again)."""
    plugin: dict[str, Any] = {"type": PLUGIN_TYPE, "enable-debug": debug}
    if log_file:
        plugin["log-file"] = log_file
    plugin.update(extra or {})
    chain = ["portmap"] if chaining_mode == "portmap" else []
    for name in chained_plugins:
        if name not in CHAINED_CAPABILITIES:
            raise ValueError(f"cannot chain {name!r}: one of {', '.join(CHAINED_CAPABILITIES)}")
        if name not in chain:
            chain.append(name)
    if host_ports and "portmap" not in chain:
        plugin["capabilities"] = {"portMappings": True}
    plugins = [plugin]
    plugins += [{"type": n, "capabilities": dict(CHAINED_CAPABILITIES[n])} for n in chain]
    name = "portmap" if chaining_mode == "portmap" else "cilium"
    version = CHAINED_CNI_VERSION if chained_plugins else CNI_VERSION
    return json.dumps({"cniVersion": version, "name": name, "plugins": plugins}, indent=2) + "\n"


def plugin_wrapper(python: str, module: str = "pylium.cni") -> str:
    """The ``cilium-cni`` executable ``cni-install`` writes: a shell script that execs the
    agent's own interpreter (so, its venv) on pylium-cni, passing stdin and the CNI
    environment through."""
    return (
        "#!/bin/sh\n"
        "# cilium-cni: installed by pylium-agent (cni-install); runs pylium-cni.\n"
        f'exec {shlex.quote(python)} -I -m {shlex.quote(module)} "$@"\n'
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
