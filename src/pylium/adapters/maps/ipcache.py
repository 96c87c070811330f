"""L3: the ipcache map (``pylium_ipcache``, LPM trie): prefix -> identity and tunnel endpoint.

C (bpf/lib/maps.h)::

    struct ipcache_key { __u32 prefixlen; __u16 cluster_id; __u8 pad; __u8 family; __u32 ip4; };
    struct remote_endpoint_info { __u32 sec_identity; __u32 tunnel_endpoint; __u16 pad;
                                  __u8 key; __u8 flags; };

``prefixlen`` counts the 32 bits of cluster_id/pad/family before the address, as Cilium's does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pylium.adapters.maps.base import Layout, RawMap

NAME = "pylium_ipcache"
FAMILY_IPV4 = 1
KEY = Layout("ipcache_key", "=IHBB4s", ("prefixlen", "cluster_id", "pad", "family", "ip4"))
VALUE = Layout(
    "remote_endpoint_info", "=I4sHBB", ("sec_identity", "tunnel_endpoint", "pad", "key", "flags")
)


@dataclass(frozen=True, slots=True)
class Entry:
    identity: int
    tunnel_endpoint: ipaddress.IPv4Address | None = None
    key: int = 0
    flags: int = 0


def encode_key(prefix: ipaddress.IPv4Network, cluster_id: int = 0) -> bytes:
    return KEY.struct.pack(
        32 + prefix.prefixlen, cluster_id, 0, FAMILY_IPV4, prefix.network_address.packed
    )


def encode_value(entry: Entry) -> bytes:
    tunnel = entry.tunnel_endpoint.packed if entry.tunnel_endpoint else b"\0" * 4
    return VALUE.struct.pack(entry.identity, tunnel, 0, entry.key, entry.flags)


def decode_value(raw: bytes) -> Entry:
    identity, tunnel, _, key, flags = VALUE.struct.unpack(raw)
    endpoint = ipaddress.IPv4Address(tunnel) if tunnel != b"\0" * 4 else None
    return Entry(identity, endpoint, key, flags)


class IPCacheMap:
    def __init__(self, fd: int) -> None:
        self.raw = RawMap(fd, KEY, VALUE, name=NAME)

    def upsert(self, prefix: ipaddress.IPv4Network, entry: Entry) -> None:
        self.raw.update(encode_key(prefix), encode_value(entry))

    def get(self, prefix: ipaddress.IPv4Network) -> Entry | None:
        values = self.raw.lookup(encode_key(prefix))
        return decode_value(values[0]) if values else None

    def delete(self, prefix: ipaddress.IPv4Network) -> bool:
        return self.raw.delete(encode_key(prefix))

    def dump(self) -> dict[ipaddress.IPv4Network, Entry]:
        out = {}
        for key in self.raw.iter_keys():
            prefixlen, _, _, _, ip = KEY.struct.unpack(key)
            values = self.raw.lookup(key)
            if values:
                out[ipaddress.IPv4Network((ip, prefixlen - 32))] = decode_value(values[0])
        return out
