"""L1: what upstream refuses in Cilium's kinds beyond their CRD schemas.

CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy follow ``Rule.Sanitize`` and friends
(``pkg/policy/api/rule_validation.go``): node selectors only in the clusterwide kind, one L3
peer kind per rule, L7 rules only on TCP ports other than 0 (DNS aside), DNS rules only on
egress with explicit ports and no ranges, no L7 in host policies, ICMP and toPorts apart,
``except`` inside its CIDR. As upstream, only the allow sections (``ingress``, ``egress``) are
sanitized beyond selectors and CIDRs; an ``endPort`` below ``port`` is one port, not an error.
CiliumPodIPPool: CIDRs of the right family and a ``maskSize`` no shorter than their prefixes.
Every check yields (field path, message).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from pylium.model.fieldchecks import except_problems, mappings, selector_problems
from pylium.model.policy.cilium import _ICMP_TYPES
from pylium.model.schema import Path, Problem

# One L3 peer kind per rule, as upstream's sanitizer demands. Deviation: a CIDR list and a
# CIDR set count as one kind here (upstream refuses the pair, though both mean "these
# prefixes" and combine as a union), so such rules written for pylium stay valid.
_L3_PEERS = {
    "ingress": (
        ("fromEndpoints",),
        ("fromCIDR", "fromCIDRSet"),
        ("fromEntities",),
        ("fromNodes",),
        ("fromGroups",),
    ),
    "egress": (
        ("toEndpoints",),
        ("toCIDR", "toCIDRSet"),
        ("toEntities",),
        ("toServices",),
        ("toFQDNs",),
        ("toGroups",),
        ("toNodes",),
    ),
}
_SECTIONS = ("ingress", "ingressDeny", "egress", "egressDeny")


def cilium_policy(body: Mapping[str, Any], *, clusterwide: bool) -> Iterator[Problem]:
    kind = "CiliumClusterwideNetworkPolicy" if clusterwide else "CiliumNetworkPolicy"
    rules: list[tuple[Path, Mapping[str, Any]]] = []
    if isinstance(body.get("spec"), Mapping):
        rules.append((("spec",), body["spec"]))
    rules.extend((("specs", index), rule) for index, rule in mappings(body.get("specs")))
    if body.get("spec") is None and not body.get("specs"):
        yield ("spec",), f"Required value: Invalid {kind} spec(s): empty policy (set spec or specs)"
    for path, rule in rules:
        if "nodeSelector" in rule and not clusterwide:
            yield (
                (*path, "nodeSelector"),
                (
                    "Forbidden: Invalid CiliumNetworkPolicy spec: rule cannot have NodeSelector "
                    "(node selectors are only allowed in CiliumClusterwideNetworkPolicy)"
                ),
            )
        for name in ("endpointSelector", "nodeSelector"):
            yield from selector_problems(rule.get(name), (*path, name))
        host_policy = "nodeSelector" in rule
        for section in _SECTIONS:
            for index, item in mappings(rule.get(section)):
                yield from _peer_rule_problems(item, section, (*path, section, index), host_policy)


def _peer_rule_problems(
    item: Mapping[str, Any], section: str, where: Path, host_policy: bool
) -> Iterator[Problem]:
    for peer in ("fromEndpoints", "toEndpoints", "fromNodes", "toNodes"):
        for index, sel in mappings(item.get(peer)):
            yield from selector_problems(sel, (*where, peer, index))
    for peer in ("fromCIDRSet", "toCIDRSet"):
        for index, cidr_rule in mappings(item.get(peer)):
            yield from except_problems(
                cidr_rule.get("cidr"), cidr_rule.get("except"), (*where, peer, index)
            )
    for index, icmp in mappings(item.get("icmps")):
        yield from _icmp_problems(icmp, (*where, "icmps", index))
    if section not in _L3_PEERS:
        return  # deny sections: upstream's sanitizer stops here
    present = [
        next(p for p in kind if item.get(p))
        for kind in _L3_PEERS[section]
        if any(item.get(p) for p in kind)
    ]
    if len(present) > 1:
        yield (
            (*where, present[1]),
            f"Invalid value: Combining {_go_name(present[0])} and {_go_name(present[1])} "
            "is not supported yet",
        )
    if item.get("toServices") and item.get("toPorts"):
        yield (
            (*where, "toPorts"),
            "Invalid value: Combining ToServices and ToPorts is not supported yet",
        )
    if item.get("icmps") and item.get("toPorts"):
        yield (
            (*where, "icmps"),
            "Invalid value: The ICMPs block may only be present without ToPorts. "
            "Define a separate rule to use ToPorts.",
        )
    for index, port_rule in mappings(item.get("toPorts")):
        yield from _port_rule_problems(
            port_rule, (*where, "toPorts", index), ingress=section == "ingress", host=host_policy
        )


def _go_name(field: str) -> str:
    """Upstream names the fields by their Go names in this message (``FromCIDRSet``)."""
    return field[0].upper() + field[1:]


def _icmp_problems(icmp: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    for index, field in mappings(icmp.get("fields")):
        family = str(field.get("family") or "IPv4")
        value = field.get("type")
        at = (*path, "fields", index, "type")
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 255:
            yield at, f'Invalid value: "{value}": must be in the range 0-255'
        elif (
            isinstance(value, str)
            and not value.isdigit()
            and family in _ICMP_TYPES
            and value not in _ICMP_TYPES[family]
        ):
            yield at, f'Unsupported value: "{value}": not an {family} ICMP type name'


def _port_rule_problems(
    port_rule: Mapping[str, Any], path: Path, *, ingress: bool, host: bool
) -> Iterator[Problem]:
    rules = port_rule.get("rules")
    rules = rules if isinstance(rules, Mapping) else {}
    l7 = [kind for kind in ("http", "dns") if rules.get(kind)]
    ports = list(mappings(port_rule.get("ports")))
    if "dns" in l7 and ingress:
        yield (*path, "rules", "dns"), "Forbidden: DNS rules are not allowed on ingress"
    if l7 and host:
        yield (*path, "rules"), "Forbidden: host policies do not support L7 rules yet"
    server_names = port_rule.get("serverNames") or []
    if server_names and l7 and not port_rule.get("terminatingTLS"):
        yield (
            (*path, "serverNames"),
            "Invalid value: ServerNames are not allowed with L7 rules without TLS termination",
        )
    for index, name in enumerate(server_names):
        if name == "":
            yield (*path, "serverNames", index), "Required value: Empty server name is not allowed"
    listener = port_rule.get("listener")
    if isinstance(listener, Mapping):
        name = listener.get("name", "")
        if ingress:
            yield (*path, "listener"), f"Forbidden: Listener is not allowed on ingress ({name})"
        if l7:
            yield (
                (*path, "listener"),
                f"Invalid value: Listener is not allowed with L7 rules ({name})",
            )
    if len(l7) > 1:
        yield (
            (*path, "rules"),
            "Invalid value: multiple L7 protocol rule types specified in single rule",
        )
    if "dns" in l7 and not ports:
        yield (*path, "ports"), "Required value: Port 53 must be specified for DNS rules"
    for index, port in ports:
        at = (*path, "ports", index)
        text = str(port.get("port") or "")
        if not text:
            yield (*at, "port"), "Required value: Port must be specified"
            continue
        end = port.get("endPort")
        if "dns" in l7 and text.isdigit() and isinstance(end, int) and end > int(text):
            yield (*at, "endPort"), "Invalid value: DNS rules do not support port ranges"
        if l7 and text.isdigit() and int(text) == 0:
            yield (*at, "port"), "Invalid value: L7 rules can not be used when a port is 0"
        protocol = port.get("protocol") or "ANY"
        if "http" in l7 and protocol != "TCP":
            yield (
                (*at, "protocol"),
                f'Invalid value: "{protocol}": L7 rules can only apply to TCP (not {protocol}) '
                "except for DNS rules",
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
                    f'Invalid value: "{mask}": must be at least the prefix length of {cidr}',
                )
