"""L2: the ``eni`` and ``ipam`` sections of a custom CNI configuration (upstream's NetConf).

With ``cni.customConf`` and a ``cni-config`` ConfigMap key (read through ``read-cni-conf``),
the CNI configuration can carry ENI settings for the node: an ``eni`` object of
``CiliumNode.spec.eni`` fields (``subnet-tags``, ``first-interface-index``,
``security-groups``, ...) and ``ipam`` watermarks (``pre-allocate``, ``min-allocate``,
``max-allocate``, ``max-above-watermark``). The agent copies them into its CiliumNode, over
what the instance metadata says. Accepts a single ``.conf`` or a ``.conflist`` (the
``cilium-cni`` plugin's entry, else the first plugin carrying an ``eni`` section).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pylium.base.errors import ConfigError

WATERMARK_KEYS = ("pre-allocate", "min-allocate", "max-allocate", "max-above-watermark")
ENI_INT_KEYS = ("first-interface-index",)


@dataclass(frozen=True, slots=True)
class ENINetConf:
    eni: dict[str, Any] = field(default_factory=dict)
    ipam: dict[str, int] = field(default_factory=dict)


def parse(text: str, *, source: str = "read-cni-conf") -> ENINetConf:
    """The ENI settings of a CNI configuration; empty when it has none."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ConfigError(source, f"not a JSON CNI configuration: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(source, "a CNI configuration is a JSON object")
    entry: dict[str, Any] = doc
    plugins = doc.get("plugins")
    if isinstance(plugins, list):
        dicts = [p for p in plugins if isinstance(p, dict)]
        entry = next(
            (p for p in dicts if p.get("type") == "cilium-cni"),
            next((p for p in dicts if "eni" in p), {}),
        )
    eni = entry.get("eni") or {}
    ipam = entry.get("ipam") or {}
    if not isinstance(eni, dict) or not isinstance(ipam, dict):
        raise ConfigError(source, "eni and ipam must be JSON objects")
    watermarks = {}
    for key in WATERMARK_KEYS:
        if key in ipam:
            value = ipam[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(source, f"ipam.{key}: {value!r} is not a count")
            watermarks[key] = value
    for key in ENI_INT_KEYS:
        if key in eni and (not isinstance(eni[key], int) or isinstance(eni[key], bool)):
            raise ConfigError(source, f"eni.{key}: {eni[key]!r} is not an integer")
    return ENINetConf(eni=dict(eni), ipam=watermarks)
