"""L2: ConfigMap keys of older Cilium releases, still accepted and rewritten with a warning.

``tunnel: disabled|vxlan|geneve`` (replaced by ``routing-mode`` + ``tunnel-protocol`` in 1.14,
removed in 1.15) and ``native-routing-cidr`` (replaced by ``ipv4-native-routing-cidr``), as in
the quick-install manifests older walkthroughs edit.
"""

from __future__ import annotations

from collections.abc import Mapping

from pylium.model.config import RoutingMode

# Keys older Cilium releases used; still accepted, rewritten, and reported as warnings.
LEGACY_KEYS: Mapping[str, str] = {
    "tunnel": "routing-mode/tunnel-protocol (removed in Cilium 1.15)",
    "native-routing-cidr": "ipv4-native-routing-cidr (removed in Cilium 1.12)",
}


def upgrade_legacy(data: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Rewrite legacy keys (``tunnel: disabled`` -> ``routing-mode: native``, ...). Returns
    the new data and (legacy key, message) pairs. New keys given explicitly win."""
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    notes: list[tuple[str, str]] = []
    if "native-routing-cidr" in data:
        out.setdefault("ipv4-native-routing-cidr", data["native-routing-cidr"])
        notes.append(("native-routing-cidr", "deprecated; use ipv4-native-routing-cidr"))
    if "tunnel" in data:
        value = data["tunnel"].strip()
        if value == "disabled":
            out.setdefault("routing-mode", RoutingMode.NATIVE.value)
            notes.append(("tunnel", '"disabled" is deprecated; use routing-mode: native'))
        else:
            out.setdefault("routing-mode", RoutingMode.TUNNEL.value)
            out.setdefault("tunnel-protocol", value)
            notes.append(
                ("tunnel", f"deprecated; use routing-mode: tunnel and tunnel-protocol: {value}")
            )
    return out, notes
