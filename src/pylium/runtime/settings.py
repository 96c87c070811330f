"""L4: read configuration files and resolve them through :mod:`pylium.core.settings`.

``load`` is what programs call: Helm values files (``-f``), ``--set``/``--set-string``
expressions and an optional ConfigMap, read from disk and resolved into effective settings.
A ConfigMap input may be a ``kind: ConfigMap`` YAML document, a flat YAML mapping of
kebab-case keys, ``key=value`` lines, or a directory holding one file per key (the way the
agent's ``--config-dir`` reads a mounted ConfigMap).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pylium.base.errors import ConfigError
from pylium.core import settings as core
from pylium.model.config import ConfigErrors


def _read_text(path: Path, source: str) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError(str(path), f"cannot read: {err.strerror or err}", source=source) from None


def read_values_file(path: Path) -> dict[str, Any]:
    """A Helm values file as a mapping (an empty file is an empty mapping)."""
    source = core.values_file_source(str(path))
    try:
        tree = yaml.safe_load(_read_text(path, source))
    except yaml.YAMLError as err:
        raise ConfigError(
            str(path), f"not valid YAML: {err}".splitlines()[0], source=source
        ) from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(str(path), "a values file must be a YAML mapping", source=source)
    return tree


def read_configmap(path: Path) -> dict[str, str]:
    """ConfigMap data from a file (YAML ConfigMap, flat YAML mapping or key=value lines) or a
    directory of one file per key (hidden files and ``..data`` links skipped)."""
    source = core.configmap_source(str(path))
    if path.is_dir():
        return {
            p.name: _read_text(p, source).strip()
            for p in sorted(path.iterdir())
            if p.is_file() and not p.name.startswith(".")
        }
    text = _read_text(path, source)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    if isinstance(document, dict):
        return core.configmap_data(document, source)
    return core.parse_flat(text, source)


def load(
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    configmap: Path | None = None,
) -> core.Resolved:
    """Effective settings from files and ``--set`` strings; raises ConfigErrors listing every
    problem (unreadable files included)."""
    problems: list[ConfigError] = []
    trees: list[tuple[str, dict[str, Any]]] = []
    for path in values_files:
        try:
            trees.append((str(path), read_values_file(path)))
        except ConfigError as err:
            problems.append(err)
    data = None
    if configmap is not None:
        try:
            data = (str(configmap), read_configmap(configmap))
        except ConfigErrors as err:
            problems.extend(err.errors)
        except ConfigError as err:
            problems.append(err)
    if problems:
        raise ConfigErrors(problems)
    return core.resolve(values_files=trees, sets=sets, set_strings=set_strings, configmap=data)
