"""L5: installing the agent's CNI configuration file once it is ready (see
:mod:`pylium.core.cniconf`): written atomically with mode 0600, skipped when unchanged, other
configs set aside when ``cni-exclusive``; removed on shutdown with ``cni-uninstall``. With
``cni-install`` the plugin executable (``cilium-cni``, running this interpreter's pylium-cni)
is put into ``cni-bin-path`` first, atomically with mode 0755, so that a runtime that sees the
config also finds the plugin."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pylium.base.errors import ConfigError
from pylium.core import cniconf
from pylium.model.config import AgentSettings

log = logging.getLogger(__name__)


def install_plugin(settings: AgentSettings, python: str = sys.executable) -> Path | None:
    """With ``cni-install``, ``<cni-bin-path>/cilium-cni`` (temp file + rename; skipped when
    unchanged); returns its path (or None)."""
    if not settings.cni_install:
        return None
    target = Path(settings.cni_bin_path) / cniconf.PLUGIN_TYPE
    content = cniconf.plugin_wrapper(python)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and target.read_text() == content and os.access(target, os.X_OK):
            return target
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(content)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except OSError as err:
        raise ConfigError("cni-bin-path", f"cannot install {target}: {err}") from err
    log.info("CNI plugin installed", extra={"file": str(target)})
    return target


def install(settings: AgentSettings, socket_path: Path) -> Path | None:
    """Install the plugin (``cni-install``), then write the config named by
    ``write-cni-conf-when-ready``; returns the config's path (or None)."""
    install_plugin(settings)
    if not settings.write_cni_conf_when_ready:
        return None
    target = Path(settings.write_cni_conf_when_ready)
    read_conf = None
    if settings.read_cni_conf:
        try:
            read_conf = Path(settings.read_cni_conf).read_text()
        except OSError as err:
            raise ConfigError("read-cni-conf", f"{settings.read_cni_conf}: {err}") from err
    generated = cniconf.render(
        chaining_mode=settings.cni_chaining_mode.value,
        log_file=settings.cni_log_file,
        debug=settings.debug,
        extra={"socket-path": str(socket_path)},
        chained_plugins=[p.value for p in settings.cni_chained_plugins],
        host_ports=settings.kube_proxy_replacement,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    decided = cniconf.plan(
        target_name=target.name,
        existing=os.listdir(target.parent),
        custom=settings.custom_cni_conf,
        exclusive=settings.cni_exclusive,
        generated=generated,
        read_conf=read_conf,
    )
    for old, new in decided.renames:
        os.replace(target.parent / old, target.parent / new)
        log.info("set aside another CNI config", extra={"file": old, "renamed": new})
    if decided.content is None:
        return None
    if target.exists() and target.read_text() == decided.content:
        return target
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(decided.content)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    log.info("CNI configuration written", extra={"file": str(target)})
    return target


def uninstall(settings: AgentSettings) -> None:
    if settings.cni_uninstall and settings.write_cni_conf_when_ready:
        Path(settings.write_cni_conf_when_ready).unlink(missing_ok=True)
