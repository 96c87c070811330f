"""L2: ClusterIP and NodePort allocation, as the Kubernetes API server does it.

* ClusterIPs come from the service CIDR (default ``10.96.0.0/12``). The network address is
  never handed out, nor the IPv4 broadcast address. The first usable address (``10.96.0.1``)
  is not special here: the API server gives it to the ``kubernetes`` service by asking for
  it explicitly, which :meth:`ClusterIPAllocator.allocate` honours like any free in-range IP.
* NodePorts come from ``node-port-range`` (default 30000-32767).
* Both ranges are split as in KEP-3070 / KEP-3668: a lower *static* band of
  ``min(max(16, size // step), cap)`` entries (IPs: step 16, cap 256; ports: step 32, cap 128)
  is used for dynamic allocation only once the upper band is full, so that explicitly chosen
  values rarely collide. Within a band the API server picks at random; here the lowest free
  value is taken, so results are reproducible.

State is plain data: :meth:`to_dict` / :meth:`from_dict` round-trip through JSON. Asking
again for a value one already owns returns it (a Service may reuse its nodePort for TCP and
UDP ports of the same number).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pylium.base.errors import AllocationError
from pylium.core.lb.addr import IPAddress

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_NODE_PORT_RANGE = (30000, 32767)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DEFAULT_CIDR: Network = ipaddress.ip_network(DEFAULT_SERVICE_CIDR)


def static_band_size(size: int, *, step: int, cap: int, minimum: int = 16) -> int:
    """KEP-3070/3668 ``calculateRangeOffset``: how many low entries form the static band."""
    if size <= minimum:
        return 0
    return min(max(minimum, size // step), cap)


@dataclass
class _Range:
    """Owners of the integers ``first..last``; dynamic picks prefer ``first + offset..``."""

    pool: str
    first: int
    last: int
    offset: int
    owners: dict[int, str] = field(default_factory=dict)

    def take(self, owner: str, value: int, shown: str) -> None:
        if not self.first <= value <= self.last:
            raise AllocationError(self.pool, f"{shown}: not in the valid range {self.pool}")
        holder = self.owners.get(value)
        if holder is not None and holder != owner:
            raise AllocationError(self.pool, f"{shown}: already allocated to {holder}")
        self.owners[value] = owner

    def take_next(self, owner: str) -> int:
        split = self.first + self.offset
        for start, stop in ((split, self.last), (self.first, split - 1)):
            value = start
            # Allocated values are few next to the range: walk only past taken ones.
            while value <= stop and value in self.owners:
                value += 1
            if value <= stop:
                self.owners[value] = owner
                return value
        raise AllocationError(self.pool, "range is full")

    def release(self, value: int) -> None:
        self.owners.pop(value, None)


@dataclass
class ClusterIPAllocator:
    """ClusterIPs of one service CIDR, each owned by ``namespace/name``."""

    cidr: Network = _DEFAULT_CIDR
    _range: _Range = field(init=False, repr=False)

    def __post_init__(self) -> None:
        net = self.cidr
        first = int(net.network_address) + 1
        last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
        offset = static_band_size(net.num_addresses, step=16, cap=256)
        self._range = _Range(str(net), first, max(first - 1, last), offset)

    def allocate(self, owner: str, requested: IPAddress | str | None = None) -> IPAddress:
        """``requested`` if it is in range and free (or already ``owner``'s), else the next."""
        if requested is None or requested == "":
            return self._ip(self._range.take_next(owner))
        try:
            ip = ipaddress.ip_address(requested)
        except ValueError as err:
            raise AllocationError(self._range.pool, f"{requested!r}: not an IP address") from err
        if ip.version != self.cidr.version:
            raise AllocationError(self._range.pool, f"{ip}: not in the valid range {self.cidr}")
        self._range.take(owner, int(ip), str(ip))
        return ip

    def release(self, ip: IPAddress | str) -> None:
        self._range.release(int(ipaddress.ip_address(ip)))

    def owner(self, ip: IPAddress | str) -> str | None:
        return self._range.owners.get(int(ipaddress.ip_address(ip)))

    @property
    def allocated(self) -> dict[IPAddress, str]:
        return {self._ip(v): o for v, o in sorted(self._range.owners.items())}

    def _ip(self, value: int) -> IPAddress:
        return ipaddress.ip_address(value)

    def to_dict(self) -> dict[str, Any]:
        return {"cidr": str(self.cidr), "allocated": {str(k): v for k, v in self.allocated.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterIPAllocator:
        alloc = cls(ipaddress.ip_network(data["cidr"]))
        for ip, owner in (data.get("allocated") or {}).items():
            alloc.allocate(str(owner), ip)
        return alloc


@dataclass
class NodePortAllocator:
    """NodePorts of ``node-port-range``, each owned by ``namespace/name``."""

    first: int = DEFAULT_NODE_PORT_RANGE[0]
    last: int = DEFAULT_NODE_PORT_RANGE[1]
    _range: _Range = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.last <= 65535:
            raise AllocationError(f"{self.first}-{self.last}", "not a valid port range")
        size = self.last - self.first + 1
        offset = static_band_size(size, step=32, cap=128)
        self._range = _Range(f"{self.first}-{self.last}", self.first, self.last, offset)

    def allocate(self, owner: str, requested: int | None = None) -> int:
        if not requested:
            return self._range.take_next(owner)
        self._range.take(owner, requested, str(requested))
        return requested

    def release(self, port: int) -> None:
        self._range.release(port)

    def owner(self, port: int) -> str | None:
        return self._range.owners.get(port)

    @property
    def allocated(self) -> dict[int, str]:
        return dict(sorted(self._range.owners.items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "range": f"{self.first}-{self.last}",
            "allocated": {str(k): v for k, v in self.allocated.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodePortAllocator:
        first, _, last = str(data["range"]).partition("-")
        alloc = cls(int(first), int(last))
        for port, owner in (data.get("allocated") or {}).items():
            alloc.allocate(str(owner), int(port))
        return alloc
