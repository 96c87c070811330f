"""L1: what the Kubernetes API server refuses in the built-in kinds beyond their schemas.

NetworkPolicy (ipBlock ``except`` a strict subset of ``cidr``, no selector beside an ipBlock,
ports 1-65535 or a named port, ``endPort`` only after a numeric ``port`` and not below it),
Service (``clusterIP`` an IP or ``None``, ``None`` not for NodePort/LoadBalancer, port names
unique and required when there are several, ``targetPort`` a port or a named port, nodePorts
only for NodePort/LoadBalancer and not twice per protocol, ``externalName`` for ExternalName,
traffic policies and affinity settings where they mean something), Pod (named container ports)
and Namespace (a DNS-1123 label). Every check yields (field path, message).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pylium.model.fieldchecks import (
    except_problems,
    iana_svc_name_problem,
    mappings,
    selector_problems,
)
from pylium.model.schema import Path, Problem

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _int_or_name_port(value: Any, at: Path) -> Iterator[Problem]:
    """A port given as a number (1-65535) or as a named port."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            yield at, f'Invalid value: "{value}": must be between 1 and 65535, inclusive'
    elif isinstance(value, str):
        problem = iana_svc_name_problem(value)
        if problem:
            yield at, f'Invalid value: "{value}": {problem}'


def network_policy(body: Mapping[str, Any]) -> Iterator[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return
    yield from selector_problems(spec.get("podSelector"), ("spec", "podSelector"))
    for section, peers_key in (("ingress", "from"), ("egress", "to")):
        for index, item in mappings(spec.get(section)):
            where: Path = ("spec", section, index)
            for pi, peer in mappings(item.get(peers_key)):
                at = (*where, peers_key, pi)
                if "ipBlock" in peer and ("podSelector" in peer or "namespaceSelector" in peer):
                    yield (
                        at,
                        "Forbidden: may not specify more than 1 peer type (ipBlock and a selector)",
                    )
                for name in ("podSelector", "namespaceSelector"):
                    yield from selector_problems(peer.get(name), (*at, name))
                block = peer.get("ipBlock")
                if isinstance(block, Mapping):
                    yield from except_problems(
                        block.get("cidr"), block.get("except"), (*at, "ipBlock"), strict=True
                    )
            for pi, port in mappings(item.get("ports")):
                at = (*where, "ports", pi)
                start, end = port.get("port"), port.get("endPort")
                if start is not None:
                    yield from _int_or_name_port(start, (*at, "port"))
                if end is None:
                    continue
                if not isinstance(start, int):
                    yield (
                        (*at, "endPort"),
                        "Invalid value: may not be specified when `port` is not a number",
                    )
                elif end < start:
                    yield (
                        (*at, "endPort"),
                        f'Invalid value: "{end}": must be greater than or equal to `port`',
                    )


def service(body: Mapping[str, Any]) -> Iterator[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return
    svc_type = spec.get("type", "ClusterIP")
    external = svc_type in ("NodePort", "LoadBalancer")
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip not in ("", "None"):
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            yield (
                ("spec", "clusterIP"),
                f'Invalid value: "{cluster_ip}": must be a valid IP address or "None"',
            )
    if cluster_ip == "None" and external:
        yield (
            ("spec", "clusterIP"),
            f"Invalid value: \"None\": may not be set to 'None' for {svc_type} services",
        )
    if svc_type == "ExternalName":
        name = spec.get("externalName")
        if not name:
            yield ("spec", "externalName"), "Required value: must be set for type ExternalName"
        elif not _DNS1123_SUBDOMAIN.match(str(name).rstrip(".").lower()):
            yield (
                ("spec", "externalName"),
                f'Invalid value: "{name}": must be a valid DNS name',
            )
    yield from _service_ports(spec, svc_type)
    if spec.get("externalTrafficPolicy") and not external and not spec.get("externalIPs"):
        yield (
            ("spec", "externalTrafficPolicy"),
            "Invalid value: may only be set for externally-accessible services",
        )
    if spec.get("sessionAffinityConfig") and spec.get("sessionAffinity", "None") != "ClientIP":
        yield (
            ("spec", "sessionAffinityConfig"),
            "Invalid value: must not be set when `sessionAffinity` is None",
        )
    if spec.get("healthCheckNodePort") and not (
        svc_type == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
    ):
        yield (
            ("spec", "healthCheckNodePort"),
            "Invalid value: may only be set when `type` is 'LoadBalancer' and "
            "`externalTrafficPolicy` is 'Local'",
        )


def _service_ports(spec: Mapping[str, Any], svc_type: str) -> Iterator[Problem]:
    ports = list(mappings(spec.get("ports")))
    names: set[str] = set()
    node_ports: set[tuple[int, str]] = set()
    for index, port in ports:
        at: Path = ("spec", "ports", index)
        name = str(port.get("name") or "")
        if len(ports) > 1 and not name:
            yield (*at, "name"), "Required value: must be specified when more than one port"
        if name:
            if name in names:
                yield (*at, "name"), f'Duplicate value: "{name}"'
            names.add(name)
            if not _DNS1123_LABEL.match(name):
                yield (*at, "name"), f'Invalid value: "{name}": must be a DNS-1123 label'
        if "targetPort" in port:
            yield from _int_or_name_port(port["targetPort"], (*at, "targetPort"))
        node_port = port.get("nodePort")
        if node_port and svc_type in ("ClusterIP", "ExternalName"):
            yield (*at, "nodePort"), f"Forbidden: may not be used when `type` is '{svc_type}'"
        elif isinstance(node_port, int) and node_port:
            key = (node_port, str(port.get("protocol") or "TCP"))
            if key in node_ports:
                yield (*at, "nodePort"), f'Duplicate value: "{node_port}"'
            node_ports.add(key)


def pod(body: Mapping[str, Any]) -> Iterator[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return
    for group in ("containers", "initContainers"):
        seen: set[str] = set()
        for ci, container in mappings(spec.get(group)):
            name = str(container.get("name") or "")
            if name in seen:
                yield ("spec", group, ci, "name"), f'Duplicate value: "{name}"'
            seen.add(name)
            port_names: set[str] = set()
            for pi, port in mappings(container.get("ports")):
                port_name = port.get("name")
                if not isinstance(port_name, str):
                    continue
                at = ("spec", group, ci, "ports", pi, "name")
                problem = iana_svc_name_problem(port_name)
                if problem:
                    yield at, f'Invalid value: "{port_name}": {problem}'
                elif port_name in port_names:
                    yield at, f'Duplicate value: "{port_name}"'
                port_names.add(port_name)


def namespace(body: Mapping[str, Any]) -> Iterator[Problem]:
    name = (body.get("metadata") or {}).get("name")
    if isinstance(name, str) and (len(name) > 63 or not _DNS1123_LABEL.match(name)):
        yield (
            ("metadata", "name"),
            f'Invalid value: "{name}": a Namespace name must be a DNS-1123 label '
            "(at most 63 lower-case alphanumeric characters or '-')",
        )
