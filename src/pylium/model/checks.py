"""L1: validation beyond the schema, as upstream's rule sanitizer and the API server apply it.

Each check returns problems as (field path, message); :mod:`pylium.model.codec` adds the file
and document. Sources: ``pkg/policy/api/rule_validation.go`` (Cilium) and Kubernetes' API
validation for the built-in kinds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pylium.model.schema import Path, Problem

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problems(labels: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix))) or not (
            0 < len(name) <= 63 and _LABEL_NAME.match(name)
        ):
            yield (*path, key), f'Invalid value: "{key}": not a valid label key'
        if not isinstance(value, str):
            continue
        if len(value) > 63 or (value and not _LABEL_NAME.match(value)):
            yield (*path, key), f'Invalid value: "{value}": not a valid label value'


LABEL_SOURCES = (
    "k8s",
    "reserved",
    "any",
    "unspec",
    "cidr",
    "cidrgroup",
    "fqdn",
    "node",
    "cni",
    "gen",
    "directory",
    "container",
)
"""Cilium's label sources: a policy selector key may name one (``k8s:app``, ``reserved:host``)."""


def _strip_source(key: str) -> str:
    source, sep, rest = key.partition(":")
    return rest if sep and source in LABEL_SOURCES else key


def _selector_problems(selector: Any, path: Path) -> Iterator[Problem]:
    if not isinstance(selector, Mapping):
        return
    match_labels = selector.get("matchLabels") or {}
    if isinstance(match_labels, Mapping):
        for key, value in match_labels.items():
            for _, message in label_problems({_strip_source(key): value}, ()):
                yield (*path, "matchLabels", key), message
    for index, expr in enumerate(selector.get("matchExpressions") or []):
        if not isinstance(expr, Mapping):
            continue
        op, values = expr.get("operator"), expr.get("values") or []
        where = (*path, "matchExpressions", index, "values")
        if op in ("In", "NotIn") and not values:
            yield where, f"Required value: must be specified when `operator` is '{op}'"
        if op in ("Exists", "DoesNotExist") and values:
            yield where, f"Forbidden: may not be specified when `operator` is '{op}'"


def _except_problems(cidr: Any, excepts: Any, path: Path) -> Iterator[Problem]:
    if not isinstance(cidr, str) or not isinstance(excepts, list):
        return
    try:
        outer = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return
    for index, item in enumerate(excepts):
        try:
            inner = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            continue
        if inner.version != outer.version or not inner.subnet_of(outer):  # type: ignore[arg-type]
            yield (*path, "except", index), f'Invalid value: "{item}": must be within {cidr}'


def _port_numbers(ports: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for index, item in enumerate(ports or []):
        if isinstance(item, Mapping):
            yield index, item


def _policy_section_problems(rule: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    for section in ("ingress", "ingressDeny", "egress", "egressDeny"):
        for index, item in enumerate(rule.get(section) or []):
            if not isinstance(item, Mapping):
                continue
            where = (*path, section, index)
            for peer in ("fromEndpoints", "toEndpoints", "fromNodes", "toNodes"):
                for pi, sel in enumerate(item.get(peer) or []):
                    yield from _selector_problems(sel, (*where, peer, pi))
            for peer in ("fromCIDRSet", "toCIDRSet"):
                for pi, cidr_rule in enumerate(item.get(peer) or []):
                    if isinstance(cidr_rule, Mapping):
                        yield from _except_problems(
                            cidr_rule.get("cidr"), cidr_rule.get("except"), (*where, peer, pi)
                        )
            if item.get("icmps") and item.get("toPorts"):
                yield (
                    (*where, "icmps"),
                    "Invalid value: ICMP rules can not be combined with toPorts",
                )
            for pri, port_rule in enumerate(item.get("toPorts") or []):
                if not isinstance(port_rule, Mapping):
                    continue
                yield from _l7_problems(port_rule, (*where, "toPorts", pri))


def _l7_problems(port_rule: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    rules = port_rule.get("rules")
    if not isinstance(rules, Mapping):
        return
    kinds = [k for k in ("http", "dns") if rules.get(k)]
    if len(kinds) > 1:
        yield (*path, "rules"), "Invalid value: multiple L7 protocol rule types specified"
    for index, port in _port_numbers(port_rule.get("ports")):
        protocol = port.get("protocol", "ANY")
        if str(port.get("port", "0")) == "0":
            yield (
                (*path, "ports", index, "port"),
                "Invalid value: L7 rules can not be used when a port is 0",
            )
        if "http" in kinds and protocol not in ("TCP", "ANY"):
            yield (
                (*path, "ports", index, "protocol"),
                (f'Invalid value: "{protocol}": L7 rules can only apply to TCP (not {protocol})'),
            )
        if "dns" in kinds and str(port.get("port")) != "53":
            yield (*path, "ports", index, "port"), "Invalid value: DNS rules need port 53"


def cilium_policy(body: Mapping[str, Any], *, clusterwide: bool) -> Iterator[Problem]:
    kind = "CiliumClusterwideNetworkPolicy" if clusterwide else "CiliumNetworkPolicy"
    rules: list[tuple[Path, Mapping[str, Any]]] = []
    if isinstance(body.get("spec"), Mapping):
        rules.append((("spec",), body["spec"]))
    for index, rule in enumerate(body.get("specs") or []):
        if isinstance(rule, Mapping):
            rules.append((("specs", index), rule))
    if body.get("spec") is None and not body.get("specs"):
        yield ("spec",), f"Required value: Invalid {kind} spec(s): empty policy (set spec or specs)"
    for path, rule in rules:
        has_ep, has_node = "endpointSelector" in rule, "nodeSelector" in rule
        if has_node and not clusterwide:
            yield (
                (*path, "nodeSelector"),
                (
                    "Forbidden: Invalid CiliumNetworkPolicy spec: rule cannot have NodeSelector "
                    "(node selectors are only allowed in CiliumClusterwideNetworkPolicy)"
                ),
            )
        elif has_ep and has_node:
            yield path, "Invalid value: rule cannot have both EndpointSelector and NodeSelector"
        elif not has_ep and not has_node:
            yield path, "Required value: rule must have one of EndpointSelector or NodeSelector"
        for name in ("endpointSelector", "nodeSelector"):
            yield from _selector_problems(rule.get(name), (*path, name))
        yield from _policy_section_problems(rule, path)


def network_policy(body: Mapping[str, Any]) -> Iterator[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return
    yield from _selector_problems(spec.get("podSelector"), ("spec", "podSelector"))
    for section, peers_key in (("ingress", "from"), ("egress", "to")):
        for index, item in enumerate(spec.get(section) or []):
            if not isinstance(item, Mapping):
                continue
            where: Path = ("spec", section, index)
            for pi, peer in enumerate(item.get(peers_key) or []):
                if not isinstance(peer, Mapping):
                    continue
                if "ipBlock" in peer and ("podSelector" in peer or "namespaceSelector" in peer):
                    yield (
                        (*where, peers_key, pi),
                        ("Forbidden: may not combine ipBlock with a selector"),
                    )
                block = peer.get("ipBlock")
                if isinstance(block, Mapping):
                    yield from _except_problems(
                        block.get("cidr"), block.get("except"), (*where, peers_key, pi, "ipBlock")
                    )
            for pi, port in _port_numbers(item.get("ports")):
                end, start = port.get("endPort"), port.get("port")
                if end is None:
                    continue
                at = (*where, "ports", pi, "endPort")
                if not isinstance(start, int):
                    yield at, "Invalid value: may not be specified when `port` is not a number"
                elif end < start:
                    yield at, f'Invalid value: "{end}": must be greater than or equal to `port`'


def service(body: Mapping[str, Any]) -> Iterator[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return
    svc_type = spec.get("type", "ClusterIP")
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip not in ("", "None"):
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            yield (
                ("spec", "clusterIP"),
                f'Invalid value: "{cluster_ip}": must be a valid IP address or "None"',
            )
    ports = list(_port_numbers(spec.get("ports")))
    names: dict[str, int] = {}
    for index, port in ports:
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            yield (
                ("spec", "ports", index, "name"),
                "Required value: must be specified when more than one port",
            )
        if name and name in names:
            yield ("spec", "ports", index, "name"), f'Duplicate value: "{name}"'
        names[str(name)] = index
        if port.get("nodePort") and svc_type == "ClusterIP":
            yield (
                ("spec", "ports", index, "nodePort"),
                ("Forbidden: may not be used when `type` is 'ClusterIP'"),
            )
    if spec.get("externalTrafficPolicy") and svc_type == "ClusterIP":
        yield (
            ("spec", "externalTrafficPolicy"),
            ("Invalid value: may only be set when `type` is 'NodePort' or 'LoadBalancer'"),
        )


def ip_pool(body: Mapping[str, Any]) -> Iterator[Problem]:
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return
    if not spec.get("ipv4") and not spec.get("ipv6"):
        yield ("spec",), "Required value: at least one of ipv4 or ipv6 must be set"
    for family, width in (("ipv4", 32), ("ipv6", 128)):
        pool = spec.get(family)
        if not isinstance(pool, Mapping):
            continue
        mask = pool.get("maskSize")
        if isinstance(mask, int) and mask > width:
            yield ("spec", family, "maskSize"), f'Invalid value: "{mask}": must be at most {width}'
        for index, cidr in enumerate(pool.get("cidrs") or []):
            try:
                net = ipaddress.ip_network(str(cidr), strict=True)
            except ValueError as err:
                yield ("spec", family, "cidrs", index), f'Invalid value: "{cidr}": {err}'
                continue
            if net.max_prefixlen != width:
                yield (
                    ("spec", family, "cidrs", index),
                    f'Invalid value: "{cidr}": not an {family} CIDR',
                )
            elif isinstance(mask, int) and mask < net.prefixlen:
                yield (
                    ("spec", family, "maskSize"),
                    (f'Invalid value: "{mask}": must be at least the prefix length of {cidr}'),
                )


CHECKS: dict[str, Callable[[Mapping[str, Any]], Iterator[Problem]]] = {
    "CiliumNetworkPolicy": lambda b: cilium_policy(b, clusterwide=False),
    "CiliumClusterwideNetworkPolicy": lambda b: cilium_policy(b, clusterwide=True),
    "NetworkPolicy": network_policy,
    "Service": service,
    "CiliumPodIPPool": ip_pool,
}
