"""L5: installing the agent's CNI configuration file once it is ready (see
:mod:`pylium.core.cniconf`): written atomically with mode 0600, skipped when unchanged, other
configs set aside when ``cni-exclusive``; removed on shutdown with ``cni-uninstall``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pylium.base.errors import ConfigError
from pylium.core import cniconf
from pylium.model.config import AgentSettings

log = logging.getLogger(__name__)


def install(settings: AgentSettings, socket_path: Path) -> Path | None:
    """Write the config named by ``write-cni-conf-when-ready``; returns its path (or None)."""
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
