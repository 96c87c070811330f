"""L3: the local endpoints map (``pylium_lxc``, Cilium's ``cilium_lxc`` shape).

C (bpf/lib/maps.h)::

    struct endpoint_key { __u32 ip4; __u8 family; __u8 key; __u16 cluster_id; };
    struct endpoint_info { __u32 ifindex; __u16 unused; __u16 lxc_id; __u32 flags;
                           __u8 mac[6]; __u8 node_mac[6]; __u32 sec_id; __u32 parent_ifindex; };
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pylium.adapters.maps.base import Layout, RawMap

NAME = "pylium_lxc"
KEY = Layout("endpoint_key", "=4sBBH", ("ip4", "family", "key", "cluster_id"))
VALUE = Layout(
    "endpoint_info",
    "=IHHI6s6sII",
    ("ifindex", "unused", "lxc_id", "flags", "mac", "node_mac", "sec_id", "parent_ifindex"),
)


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    ifindex: int
    endpoint_id: int
    identity: int
    mac: bytes = b"\0" * 6
    node_mac: bytes = b"\0" * 6
    flags: int = 0


def encode_key(ip: ipaddress.IPv4Address) -> bytes:
    return KEY.struct.pack(ip.packed, 1, 0, 0)


def decode_value(raw: bytes) -> EndpointInfo:
    ifindex, _, lxc_id, flags, mac, node_mac, sec_id, _ = VALUE.struct.unpack(raw)
    return EndpointInfo(ifindex, lxc_id, sec_id, mac, node_mac, flags)


class EndpointsMap:
    def __init__(self, fd: int) -> None:
        self.raw = RawMap(fd, KEY, VALUE, name=NAME)

    def upsert(self, ip: ipaddress.IPv4Address, info: EndpointInfo) -> None:
        value = VALUE.struct.pack(
            info.ifindex, 0, info.endpoint_id, info.flags, info.mac, info.node_mac, info.identity, 0
        )
        self.raw.update(encode_key(ip), value)

    def get(self, ip: ipaddress.IPv4Address) -> EndpointInfo | None:
        values = self.raw.lookup(encode_key(ip))
        return decode_value(values[0]) if values else None

    def dump(self) -> dict[ipaddress.IPv4Address, EndpointInfo]:
        out = {}
        for key in self.raw.iter_keys():
            values = self.raw.lookup(key)
            if values:
                out[ipaddress.IPv4Address(KEY.struct.unpack(key)[0])] = decode_value(values[0])
        return out

    def delete(self, ip: ipaddress.IPv4Address) -> bool:
        return self.raw.delete(encode_key(ip))
