"""L1: CustomResourceDefinition manifests for Cilium's kinds, built from the same schemas that
validate documents here, so that ``deploy/crds/`` can be installed into a real cluster."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from pylium.model import registry, schemas

PRINTER_COLUMNS: dict[str, list[dict[str, str]]] = {
    "CiliumNetworkPolicy": [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Valid",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Valid")].status',
        },
    ],
    "CiliumNode": [
        {
            "name": "CiliumInternalIP",
            "type": "string",
            "jsonPath": '.spec.addresses[?(@.type=="CiliumInternalIP")].ip',
        },
        {
            "name": "InternalIP",
            "type": "string",
            "jsonPath": '.spec.addresses[?(@.type=="InternalIP")].ip',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}


def _structural(node: Any) -> Any:
    """A structural schema: ``additionalProperties`` never beside ``properties`` (the API
    server prunes unknown fields instead of refusing them)."""
    if isinstance(node, dict):
        out = {k: _structural(v) for k, v in node.items()}
        if "properties" in out:
            out.pop("additionalProperties", None)
        return out
    if isinstance(node, list):
        return [_structural(v) for v in node]
    return node


def _crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the API server wants it; metadata is validated by the server itself."""
    out: dict[str, Any] = _structural(copy.deepcopy(schema))
    out["properties"]["metadata"] = {"type": "object"}
    return out


def crd(info: registry.KindInfo) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _crd_schema(schemas.SCHEMAS[info.kind])},
    }
    if "status" in schemas.SCHEMAS[info.kind].get("properties", {}):
        version["subresources"] = {"status": {}}
    if info.kind in PRINTER_COLUMNS:
        version["additionalPrinterColumns"] = PRINTER_COLUMNS[info.kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{info.group}"},
        "spec": {
            "group": info.group,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": ["cilium"],
            },
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "versions": [version],
        },
    }


class _NoAliases(yaml.SafeDumper):
    """Shared sub-schemas are written out in full: no YAML anchors in a CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_all() -> dict[str, str]:
    """File name -> YAML text, for every Cilium kind."""
    return {
        f"{info.group}_{info.plural}.yaml": yaml.dump(crd(info), Dumper=_NoAliases, sort_keys=False)
        for info in registry.KINDS
        if info.crd
    }
