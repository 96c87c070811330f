"""L3: the node configuration map (``pylium_config``, one entry) the agent writes at start-up.

C (bpf/lib/config.h)::

    struct node_config { __u32 tunnel_ifindex; __u32 flags; };

``flags``: :data:`FLAG_POLICY_AUDIT_MODE` (``policy-audit-mode``: would-be policy drops pass
and are reported as AUDIT policy verdicts); read by the programs at run time.
"""

from __future__ import annotations

import struct

from pylium.adapters.maps.base import Layout, RawMap

NAME = "pylium_config"
VALUE = Layout("node_config", "=II", ("tunnel_ifindex", "flags"))
KEY = Layout("__u32", "=I", ("index",))
FLAG_POLICY_AUDIT_MODE = 1


class ConfigMap:
    def __init__(self, fd: int) -> None:
        self.raw = RawMap(fd, KEY, VALUE, name=NAME)

    def set(self, *, tunnel_ifindex: int, flags: int | None = None) -> None:
        """Write the entry; ``flags`` None keeps the current flags (audit mode survives a
        tunnel device's re-creation)."""
        if flags is None:
            flags = self.get()[1]
        self.raw.update(struct.pack("=I", 0), VALUE.struct.pack(tunnel_ifindex, flags))

    def get(self) -> tuple[int, int]:
        values = self.raw.lookup(struct.pack("=I", 0))
        assert values is not None  # an ARRAY map always holds its entries
        tunnel, flags = VALUE.struct.unpack(values[0])
        return tunnel, flags

    def set_policy_audit_mode(self, enabled: bool) -> None:
        """Switch policy audit mode, keeping the other settings."""
        tunnel, flags = self.get()
        flags = flags | FLAG_POLICY_AUDIT_MODE if enabled else flags & ~FLAG_POLICY_AUDIT_MODE
        self.set(tunnel_ifindex=tunnel, flags=flags)
