"""L3: the NodePort NAT map ``pylium_snat_v4_external`` (Cilium's ``cilium_snat_v4_external``
shape: a conntrack tuple -> ``ipv4_nat_entry``), written by bpf_host's NodePort path and read
back here for tests and inspection.

C (bpf/lib/nat.h)::

    struct ipv4_nat_entry { __u64 created; __u32 needs_ct; __u32 pad1;
                            __be32 to_addr; __be16 to_port; __u16 pad2; };

Keys are ``ipv4_ct_tuple`` (adapters/maps/ct.py) with flags 0 (OUT: the SNAT of a connection
to a remote backend), 1 (IN: its reverse) or 4 (SERVICE: the reverse DNAT of a backend's
replies to the frontend).
"""

from __future__ import annotations

import ipaddress

from pylium.adapters.maps import ct
from pylium.adapters.maps.base import Layout, RawMap
from pylium.core.conntrack import TUPLE_F_IN, TUPLE_F_OUT, TUPLE_F_SERVICE
from pylium.core.conntrack import NATEntry as Entry

__all__ = ["NAME", "TUPLE_F_IN", "TUPLE_F_OUT", "TUPLE_F_SERVICE", "Entry", "NATMap"]

NAME = "pylium_snat_v4_external"
VALUE = Layout(
    "ipv4_nat_entry",
    "=QII4s2sH",
    ("created", "needs_ct", "pad1", "to_addr", "to_port", "pad2"),
)


class NATMap:
    def __init__(self, fd: int) -> None:
        self.raw = RawMap(fd, ct.KEY, VALUE, name=NAME)

    def get(self, t: ct.Tuple) -> Entry | None:
        values = self.raw.lookup(ct.encode_key(t))
        return _decode(values[0]) if values else None

    def dump(self) -> dict[ct.Tuple, Entry]:
        out = {}
        for key in list(self.raw.iter_keys()):
            values = self.raw.lookup(key)
            if values:
                out[ct.decode_key(key)] = _decode(values[0])
        return out

    def delete(self, t: ct.Tuple) -> bool:
        return self.raw.delete(ct.encode_key(t))

    def flush(self) -> int:
        """Delete every entry (``cilium-dbg bpf nat flush``); returns how many."""
        return sum(self.raw.delete(key) for key in list(self.raw.iter_keys()))


def _decode(raw: bytes) -> Entry:
    created, needs_ct, _, addr, port, _ = VALUE.struct.unpack(raw)
    return Entry(
        ipaddress.IPv4Address(addr), int.from_bytes(port, "big"), int(created), int(needs_ct)
    )
