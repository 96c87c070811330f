"""L2: a rule's sections as flat *contributions*: (peer selector, L4 match, allow|deny, origin).

Both consumers of a resolved policy start here: :mod:`.mapstate` expands each selector to
identities through the selector cache and the L4 match to LPM port prefixes, while
:mod:`.explain` evaluates contributions directly against one packet's remote labels and port.

Peers become identity selectors the way ``pkg/policy/api`` does it: ``fromEndpoints`` and
``fromNodes`` are label selectors; entities are selectors on reserved labels (``all`` is the
wildcard selector, identity 0 in the map); CIDRs select CIDR identities (labels
``cidr:<prefix>``) whose prefix lies inside the CIDR and not inside an ``except``, and a /0
also selects ``reserved:world`` (and ``world-ipv4``/``world-ipv6``). A section without peers
but with ports applies to every peer. Ports expand ``ANY`` to TCP, UDP and SCTP, port 0 to all
ports, ``endPort`` to a range (``endPort <= port`` is one port), named ports through the
caller's map, and ICMP types to (ICMP protocol, type).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pylium.core import selectors
from pylium.model.policy import (
    CIDRRule,
    Entity,
    IPNetwork,
    LabelSelector,
    PeerRule,
    PolicyRef,
    Protocol,
    Rule,
)

PROTO_NUMBERS = {
    Protocol.TCP: 6,
    Protocol.UDP: 17,
    Protocol.SCTP: 132,
    Protocol.ICMP: 1,
    Protocol.ICMPV6: 58,
    Protocol.VRRP: 112,
    Protocol.IGMP: 2,
}
PROTO_NAMES = {v: k.value for k, v in PROTO_NUMBERS.items()}
ANY_PROTOCOLS = (6, 17, 132)
MAX_PORT = 0xFFFF


class Direction(enum.IntEnum):
    """Cilium's ``TrafficDirection`` numbering."""

    INGRESS = 0
    EGRESS = 1

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, order=True)
class CIDRSelector:
    """Selects CIDR identities inside ``cidr`` and outside every ``except``."""

    cidr: IPNetwork
    except_: tuple[IPNetwork, ...] = ()

    def matches(self, labels: selectors.LabelSet) -> bool:
        if self.cidr.prefixlen == 0 and any(
            labels.has(f"reserved:{w}") for w in ("world", f"world-ipv{self.cidr.version}")
        ):
            return True
        for prefix in labels.keys_of_source("cidr"):
            net = parse_cidr_label(prefix)
            if (
                net is not None
                and net.version == self.cidr.version
                and net.subnet_of(self.cidr)  # type: ignore[arg-type]
                and not any(
                    net.version == e.version and net.subnet_of(e)  # type: ignore[arg-type]
                    for e in self.except_
                )
            ):
                return True
        return False

    def __str__(self) -> str:
        excepts = f" except {','.join(map(str, self.except_))}" if self.except_ else ""
        return f"cidr:{self.cidr}{excepts}"


IdentitySelector = LabelSelector | CIDRSelector
WILDCARD = LabelSelector()


def parse_cidr_label(key: str) -> IPNetwork | None:
    """The prefix of a ``cidr:`` label key; Cilium writes IPv6 with ``-`` for ``:``."""
    for text in (key, key.replace("-", ":")):
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
    return None


def selector_matches(selector: IdentitySelector, labels: selectors.LabelSet) -> bool:
    if isinstance(selector, CIDRSelector):
        return selector.matches(labels)
    return selectors.matches(selector, labels)


def _reserved(*names: str) -> tuple[LabelSelector, ...]:
    return tuple(LabelSelector(((f"reserved:{n}", ""),)) for n in names)


def entity_selectors(entity: Entity, cluster_name: str) -> tuple[LabelSelector, ...]:
    """``pkg/policy/api/entity.go`` EntitySelectorMapping."""
    if entity is Entity.ALL:
        return (WILDCARD,)
    if entity is Entity.NONE:
        return ()
    if entity is Entity.WORLD:
        return _reserved("world", "world-ipv4", "world-ipv6")
    if entity is Entity.CLUSTER:
        return (
            *_reserved(
                "host", "remote-node", "init", "ingress", "health", "unmanaged", "kube-apiserver"
            ),
            LabelSelector((("k8s:io.cilium.k8s.policy.cluster", cluster_name),)),
        )
    return _reserved(entity.value)


def peer_selectors(section: PeerRule, cluster_name: str) -> tuple[IdentitySelector, ...]:
    """Every selector of a section's peers; the wildcard for an L4-only section."""
    out: list[IdentitySelector] = [*section.endpoints, *section.nodes]
    for entity in section.entities:
        out.extend(entity_selectors(entity, cluster_name))
    out.extend(CIDRSelector(c) for c in section.cidr)
    out.extend(_cidr_rule(c) for c in section.cidr_set)
    if not section.has_peers and (section.to_ports or section.icmps):
        out.append(WILDCARD)
    return tuple(dict.fromkeys(out))


def _cidr_rule(rule: CIDRRule) -> CIDRSelector:
    return CIDRSelector(rule.cidr, tuple(e for e in rule.except_ if e.version == rule.cidr.version))


@dataclass(frozen=True, slots=True, order=True)
class L4Match:
    """Protocol number (0: any, then ports do not apply) and an inclusive port range."""

    proto: int = 0
    start: int = 0
    end: int = MAX_PORT

    def matches(self, proto: int, port: int) -> bool:
        return self.proto == 0 or (self.proto == proto and self.start <= port <= self.end)

    def __str__(self) -> str:
        return port_proto(self.proto, self.start, self.end)


def port_proto(proto: int, start: int, end: int) -> str:
    """``cilium-dbg bpf policy get`` style: ``ANY``, ``TCP`` (all ports), ``80/TCP``,
    ``8080-8095/TCP``."""
    if proto == 0:
        return "ANY"
    name = PROTO_NAMES.get(proto, str(proto))
    if (start, end) == (0, MAX_PORT):
        return name
    return f"{start}/{name}" if start == end else f"{start}-{end}/{name}"


ANY_L4 = L4Match()
NamedPorts = Mapping[str, frozenset[tuple[int, int]]]
"""Port name -> (protocol number, port) pairs: the endpoint's own for ingress, all
endpoints' for egress (Cilium's named-ports map)."""
NO_NAMED_PORTS: NamedPorts = MappingProxyType({})


def l4_matches(section: PeerRule, named_ports: NamedPorts) -> tuple[L4Match, ...]:
    """A section's L4 matches; any protocol and port when it has neither ports nor ICMP."""
    if not section.to_ports and not section.icmps:
        return (ANY_L4,)
    out: list[L4Match] = []
    for port_rule in section.to_ports:
        for pp in port_rule.ports:
            protos = ANY_PROTOCOLS if pp.protocol is Protocol.ANY else (PROTO_NUMBERS[pp.protocol],)
            if pp.name:
                out.extend(
                    L4Match(p, n, n) for p, n in sorted(named_ports.get(pp.name, ())) if p in protos
                )
            elif pp.port == 0:
                out.extend(L4Match(p) for p in protos)
            else:
                end = pp.end_port if pp.end_port > pp.port else pp.port
                out.extend(L4Match(p, pp.port, end) for p in protos)
    for icmp in section.icmps:
        proto = 58 if icmp.family == "IPv6" else 1
        out.append(L4Match(proto, icmp.type, icmp.type))
    return tuple(dict.fromkeys(out))


SECTION_NAMES = {
    (Direction.INGRESS, False): "ingress",
    (Direction.INGRESS, True): "ingressDeny",
    (Direction.EGRESS, False): "egress",
    (Direction.EGRESS, True): "egressDeny",
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a contribution comes from: a rule's section entry, or an implicit one."""

    ref: PolicyRef | None = None
    section: str = ""
    index: int = 0
    implicit: str = ""
    """Cilium's derived-from names for entries no rule wrote: ``allow-any-ingress``,
    ``allow-localhost-ingress``, ``default-allow-ingress`` (enableDefaultDeny=false)."""

    def __str__(self) -> str:
        if self.ref is None:
            return self.implicit
        return f"{self.ref} {self.section}[{self.index}]"


@dataclass(frozen=True, slots=True)
class Contribution:
    deny: bool
    selector: IdentitySelector
    l4: L4Match
    origin: Origin


def sections(rule: Rule, direction: Direction, deny: bool) -> tuple[PeerRule, ...]:
    if direction is Direction.INGRESS:
        return rule.ingress_deny if deny else rule.ingress
    return rule.egress_deny if deny else rule.egress


def has_direction(rule: Rule, direction: Direction) -> bool:
    return bool(sections(rule, direction, False) or sections(rule, direction, True))


def rule_contributions(
    rule: Rule, direction: Direction, *, named_ports: NamedPorts, cluster_name: str
) -> Iterator[Contribution]:
    for deny in (True, False):
        name = SECTION_NAMES[direction, deny]
        for i, section in enumerate(sections(rule, direction, deny)):
            origin = Origin(rule.ref, name, i)
            l4s = l4_matches(section, named_ports)
            for sel in peer_selectors(section, cluster_name):
                for l4 in l4s:
                    yield Contribution(deny, sel, l4, origin)
