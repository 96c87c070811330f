"""L3: the node configuration map (``pylium_config``, one entry) the agent writes at start-up.

C (bpf/lib/maps.h)::

    struct node_config { __u32 tunnel_ifindex; __u32 flags; };
"""

from __future__ import annotations

import struct

from pylium.adapters.maps.base import Layout, RawMap

NAME = "pylium_config"
VALUE = Layout("node_config", "=II", ("tunnel_ifindex", "flags"))
KEY = Layout("__u32", "=I", ("index",))


class ConfigMap:
    def __init__(self, fd: int) -> None:
        self.raw = RawMap(fd, KEY, VALUE, name=NAME)

    def set(self, *, tunnel_ifindex: int, flags: int = 0) -> None:
        self.raw.update(struct.pack("=I", 0), VALUE.struct.pack(tunnel_ifindex, flags))

    def get(self) -> tuple[int, int]:
        values = self.raw.lookup(struct.pack("=I", 0))
        assert values is not None  # an ARRAY map always holds its entries
        tunnel, flags = VALUE.struct.unpack(values[0])
        return tunnel, flags
