"""L2: the load balancer's vocabulary: protocols, scopes, service types, backend states, and
the L3n4 address that names a frontend or a backend (``pkg/loadbalancer/loadbalancer.go``).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from enum import IntEnum, StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=1 << 16)
def parse_ip(text: str) -> IPAddress:
    """``ipaddress.ip_address(text)``, remembered: a Service's cluster IPs are parsed again for
    each of its frontends, and a full resync parses every address."""
    return ipaddress.ip_address(text)


class Protocol(StrEnum):
    """L4 protocols a service port can use, with their IP protocol numbers (u8proto)."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"

    @property
    def number(self) -> int:
        return _PROTO_NUMBERS[self]

    @classmethod
    def parse(cls, text: str) -> Protocol:
        """``TCP``/``tcp`` -> TCP (CNI portMappings use lower case); ValueError otherwise."""
        known = _PROTOCOLS_BY_TEXT.get(text)
        return known if known is not None else cls(text.upper())


_PROTO_NUMBERS = {Protocol.TCP: 6, Protocol.UDP: 17, Protocol.SCTP: 132}
_PROTOCOLS_BY_TEXT = {p.value: p for p in Protocol}


class Scope(IntEnum):
    """Lookup scope of a frontend: from outside the node (0) or from inside it (1, ``/i``)."""

    EXTERNAL = 0
    INTERNAL = 1


class SVCType(StrEnum):
    """Upstream's internal frontend types (``SVCType``), printed in ``service list``."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    EXTERNAL_IPS = "ExternalIPs"
    LOAD_BALANCER = "LoadBalancer"
    HOST_PORT = "HostPort"
    LOCAL_REDIRECT = "LocalRedirect"
    NONE = "NONE"


class TrafficPolicy(StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class BackendState(StrEnum):
    """Backend states with upstream's strings, in upstream's order (active sorts first)."""

    ACTIVE = "active"
    TERMINATING = "terminating"
    TERMINATING_NOT_SERVING = "terminating-not-serving"
    QUARANTINED = "quarantined"
    MAINTENANCE = "maintenance"

    @property
    def order(self) -> int:
        return _STATE_ORDER[self]

    @property
    def datapath_flags(self) -> int:
        """``lb{4,6}_backend.flags``: active 0, terminating 1, quarantined 2, maintenance 3.

        The datapath has no terminating-not-serving flag; like terminating, such a backend
        only serves flows that conntrack already pins to it.
        """
        return _STATE_FLAGS[self]


_STATE_ORDER = {s: i for i, s in enumerate(BackendState)}
_STATE_FLAGS = {
    BackendState.ACTIVE: 0,
    BackendState.TERMINATING: 1,
    BackendState.TERMINATING_NOT_SERVING: 1,
    BackendState.QUARANTINED: 2,
    BackendState.MAINTENANCE: 3,
}


@dataclass(frozen=True, slots=True)
class L3n4Addr:
    """IP, port, protocol and lookup scope (``L3n4Addr``); backends are always external."""

    address: IPAddress
    port: int
    protocol: Protocol = Protocol.TCP
    scope: Scope = Scope.EXTERNAL

    def __hash__(self) -> int:
        # The address's own hash formats it as hex text: slow in the services engine's dicts.
        return hash((int(self.address), self.port, self.protocol, self.scope))

    def __str__(self) -> str:
        """``10.0.0.5:80/TCP``, ``[fd00::5]:80/TCP``, ``10.0.0.5:80/TCP/i`` (internal scope)."""
        address = self.address
        host = f"[{address}]" if address.version == 6 else ".".join(map(str, address.packed))
        scope = "/i" if self.scope is Scope.INTERNAL else ""
        return f"{host}:{self.port}/{self.protocol.value}{scope}"

    @property
    def is_surrogate(self) -> bool:
        """The ``0.0.0.0``/``::`` NodePort or HostPort frontend that stands for every address."""
        return self.address.is_unspecified

    def sort_key(self) -> tuple[int, int, int, str, int]:
        return (self.address.version, int(self.address), self.port, self.protocol, self.scope)


@dataclass(frozen=True, slots=True, order=True)
class ServiceName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
