"""L3: the per-endpoint policy maps (Cilium's ``cilium_policy_v2_<EPID>`` LPM tries).

``pylium_policy_v2`` (hash of maps) maps an endpoint ID to that endpoint's own LPM trie, so one
loaded program serves every endpoint. This module owns the trie's key/value layout and turns
core :class:`~pylium.core.policy.mapstate.MapState` entries into rows and back.

C (bpf/lib/policy.h)::

    struct policy_key { __u32 prefixlen; __u32 sec_label; __u8 egress; __u8 protocol;
                        __be16 dport; };
    struct policy_entry { __be16 proxy_port; __u8 flags; __u8 auth_type;
                          __u8 lpm_prefix_length; __u8 pad[3]; __u32 precedence;
                          __u32 cookie; };

``prefixlen`` = 40 (identity and direction, always whole) + the key's L4 prefix
(:attr:`PolicyKey.lpm_len`: 0 for any protocol, else 8 + the port prefix); the value repeats
that L4 prefix in ``lpm_prefix_length`` so that the datapath can compare the identity's and
the wildcard's answers. ``flags`` bit 0 is deny. ICMP keys carry the type as the port, as the
core builds them.

An endpoint without a map has no policy wired and its traffic passes; once a map is inserted,
a packet matching no entry is dropped. So :meth:`PolicyMaps.write` fills a new map *before*
inserting it, and updates an existing one in :func:`update_order`, which never lets through,
even briefly, what neither the old nor the new entries allow, nor (for core-built states)
drops what both allow. Each endpoint's map is also pinned as
``pylium_policy_v2_<EPID, 5 digits>`` beside the object's maps, for ``bpftool map dump
pinned``.
"""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path
from types import TracebackType

from pylium.adapters.bpf import libbpf
from pylium.adapters.maps.base import Layout, RawMap, open_pinned
from pylium.base.errors import DatapathError
from pylium.core.policy.diff import MapStateDiff, diff
from pylium.core.policy.mapstate import PORT_BITS, PROTO_BITS, MapEntry, MapState, PolicyKey
from pylium.core.policy.peers import Direction

NAME = "pylium_policy_v2"
"""The outer map: endpoint ID -> the endpoint's policy map."""
PIN_PREFIX = "pylium_policy_v2_"
KEY = Layout("policy_key", "=IIBB2s", ("prefixlen", "sec_label", "egress", "protocol", "dport"))
VALUE = Layout(
    "policy_entry",
    "=2sBBB3sII",
    (
        "proxy_port",
        "flags",
        "auth_type",
        "lpm_prefix_length",
        "pad",
        "precedence",
        "cookie",
    ),
)
OUTER_KEY = Layout("__u32", "=I", ("endpoint_id",))
OUTER_VALUE = Layout("__u32", "=I", ("map_id",))
"""What user space reads from a map of maps: the inner map's ID (it writes an fd)."""
MAX_ENTRIES = 16384
"""Per endpoint (Cilium's bpf-policy-map-max default); must equal POLICY_MAP_SIZE in C."""
PREFIX_BITS = 40
FLAG_DENY = 1
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_F_NO_PREALLOC = 1


def pin_name(endpoint_id: int) -> str:
    return f"{PIN_PREFIX}{endpoint_id:05d}"


def encode_key(key: PolicyKey) -> bytes:
    port = 0
    if key.proto:
        shift = PORT_BITS - key.prefix_len
        port = key.port >> shift << shift
    return KEY.struct.pack(
        PREFIX_BITS + key.lpm_len,
        key.identity,
        int(key.direction),
        key.proto,
        port.to_bytes(2, "big"),
    )


def decode_key(raw: bytes) -> PolicyKey:
    prefixlen, identity, egress, proto, port = KEY.struct.unpack(raw)
    direction = Direction(egress)
    l4_len = prefixlen - PREFIX_BITS
    if l4_len < PROTO_BITS:
        return PolicyKey(direction, identity)
    return PolicyKey(direction, identity, proto, int.from_bytes(port, "big"), l4_len - PROTO_BITS)


def encode_value(key: PolicyKey, entry: MapEntry) -> bytes:
    return VALUE.struct.pack(
        b"\0\0", FLAG_DENY if entry.deny else 0, 0, key.lpm_len, b"\0" * 3, 0, 0
    )


def decode_value(raw: bytes) -> MapEntry:
    _, flags, _, _, _, _, _ = VALUE.struct.unpack(raw)
    return MapEntry(deny=bool(flags & FLAG_DENY))


def update_order(change: MapStateDiff, old: MapState) -> list[tuple[PolicyKey, MapEntry | None]]:
    """The writes of ``change`` to a map holding ``old`` (an entry to upsert, None to delete),
    ordered so that no intermediate map lets through what neither the old nor the new state
    allows: new and changed denies, then new and changed allows, then the removed allows, then
    the removed denies (a deny goes only once nothing it shadowed is left). For states the core
    builds (deny-preferred), a packet both states allow is not dropped in between either.
    ``tests/unit/test_policy_map_update.py`` checks both on every intermediate state.
    """
    adds = sorted(change.adds.items())
    # a key the map does not hold as far as we know is deleted last, as a deny would be
    removed = [(k, old.entries[k].deny if k in old.entries else True) for k in change.removes]
    out: list[tuple[PolicyKey, MapEntry | None]] = [(k, e) for k, e in adds if e.deny]
    out += [(k, e) for k, e in adds if not e.deny]
    out += [(k, None) for k, deny in removed if not deny]
    out += [(k, None) for k, deny in removed if deny]
    return out


class EndpointPolicyMap:
    """One endpoint's policy map, by an fd this object owns (``close`` or ``with``)."""

    def __init__(self, fd: int, endpoint_id: int) -> None:
        self.fd = fd
        self.endpoint_id = endpoint_id
        self.raw = RawMap(fd, KEY, VALUE, name=pin_name(endpoint_id))

    def upsert(self, key: PolicyKey, entry: MapEntry) -> None:
        self.raw.update(encode_key(key), encode_value(key, entry))

    def delete(self, key: PolicyKey) -> bool:
        return self.raw.delete(encode_key(key))

    def read(self) -> MapState:
        """The entries as the kernel holds them (origins are not stored: ``derived_from``
        comes back empty)."""
        entries = {}
        for raw_key in list(self.raw.iter_keys()):
            # A lookup in an LPM trie is a longest-prefix match; for a key read back from the
            # trie that is the key's own entry.
            values = self.raw.lookup(raw_key)
            if values:
                entries[decode_key(raw_key)] = decode_value(values[0])
        return MapState(entries)

    def apply(self, change: MapStateDiff, old: MapState | None = None) -> None:
        """Write ``change`` in :func:`update_order`; ``old`` is what the map holds (read from
        it when not given)."""
        for key, entry in update_order(change, self.read() if old is None else old):
            if entry is None:
                self.delete(key)
            else:
                self.upsert(key, entry)

    def sync(self, state: MapState) -> MapStateDiff:
        """Make the map hold exactly ``state``; returns what was changed."""
        current = self.read()
        change = diff(current, state)
        self.apply(change, current)
        return change

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> EndpointPolicyMap:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PolicyMaps:
    """Every endpoint's policy map, through the outer map ``pylium_policy_v2``.

    ``outer_fd`` is ``obj.map_fd(NAME)`` of a loaded bpf_lxc or bpf_overlay (they share the
    pinned map), or :func:`~pylium.adapters.maps.base.open_pinned` of its pin; ``pin_dir`` is
    where the endpoints' maps are pinned (the object's pin directory; None: not pinned).
    """

    def __init__(self, outer_fd: int, pin_dir: Path | None = None) -> None:
        self.outer = RawMap(outer_fd, OUTER_KEY, OUTER_VALUE, name=NAME)
        self.pin_dir = pin_dir

    @classmethod
    def from_pins(cls, pin_dir: Path) -> PolicyMaps:
        """The maps a loaded object pinned under ``pin_dir`` (another process, e.g. the CLI,
        or the agent after a restart before it loads)."""
        return cls(open_pinned(str(pin_dir / NAME)), pin_dir)

    def endpoints(self) -> list[int]:
        """IDs of the endpoints that have a policy map, sorted."""
        return sorted(struct.unpack("=I", k)[0] for k in self.outer.iter_keys())

    def open(self, endpoint_id: int) -> EndpointPolicyMap | None:
        """The endpoint's map (close it after use), or None when it has none."""
        values = self.outer.lookup(struct.pack("=I", endpoint_id))
        if values is None:
            return None
        map_id = struct.unpack("=I", values[0])[0]
        fd = libbpf.lib().bpf_map_get_fd_by_id(map_id)
        if fd < 0:
            # removed between the two calls
            return None
        return EndpointPolicyMap(int(fd), endpoint_id)

    def read(self, endpoint_id: int) -> MapState | None:
        """The endpoint's entries, or None when it has no map (policy not wired)."""
        m = self.open(endpoint_id)
        if m is None:
            return None
        with m:
            return m.read()

    def write(self, endpoint_id: int, state: MapState, old: MapState | None = None) -> MapStateDiff:
        """Make the endpoint's map hold ``state``, creating it when missing (filled first,
        then inserted: the endpoint never sees a half-written policy). Returns the change.
        ``old``, what this caller last wrote there, saves reading an existing map back (about
        18 ms per 1,000 entries); without it the map's own contents are diffed. A state
        larger than the map is refused before anything is written."""
        if len(state) > MAX_ENTRIES:
            raise DatapathError(
                pin_name(endpoint_id),
                "write policy",
                f"{len(state)} entries, the map holds {MAX_ENTRIES} (bpf-policy-map-max)",
            )
        existing = self.open(endpoint_id)
        if existing is not None:
            with existing:
                if old is None:
                    return existing.sync(state)
                change = diff(old, state)
                existing.apply(change, old)
                return change
        with self._create(endpoint_id) as new:
            change = diff(MapState({}), state)
            new.apply(change, MapState({}))
            self._pin(new)
            rc = libbpf.lib().bpf_map_update_elem(
                self.outer.fd,
                struct.pack("=I", endpoint_id),
                struct.pack("=I", new.fd),
                0,
            )
            libbpf.check(rc, NAME, f"insert endpoint {endpoint_id}'s map")
        return change

    def apply(self, endpoint_id: int, change: MapStateDiff, old: MapState | None = None) -> None:
        """Apply a core diff to the endpoint's existing map, in :func:`update_order`. ``old``
        (the state the diff was computed from) saves reading the map back to order removals."""
        m = self.open(endpoint_id)
        if m is None:
            raise DatapathError(NAME, "apply policy diff", f"endpoint {endpoint_id} has no map")
        with m:
            m.apply(change, old)

    def delete(self, endpoint_id: int) -> bool:
        """Remove the endpoint's map (its traffic then passes unchecked): whether it had one."""
        if self.pin_dir is not None:
            (self.pin_dir / pin_name(endpoint_id)).unlink(missing_ok=True)
        return self.outer.delete(struct.pack("=I", endpoint_id))

    def _create(self, endpoint_id: int) -> EndpointPolicyMap:
        opts = libbpf.MapCreateOpts(sz=ctypes.sizeof(libbpf.MapCreateOpts))
        opts.map_flags = BPF_F_NO_PREALLOC
        fd = libbpf.lib().bpf_map_create(
            BPF_MAP_TYPE_LPM_TRIE,
            f"policy_v2_{endpoint_id:05d}".encode(),  # kernel names hold 15 characters
            KEY.size,
            VALUE.size,
            MAX_ENTRIES,
            ctypes.byref(opts),
        )
        libbpf.check(fd, pin_name(endpoint_id), "create")
        return EndpointPolicyMap(int(fd), endpoint_id)

    def _pin(self, m: EndpointPolicyMap) -> None:
        if self.pin_dir is None:
            return
        path = self.pin_dir / pin_name(m.endpoint_id)
        path.unlink(missing_ok=True)  # a stale pin of an earlier map for the same ID
        libbpf.check(libbpf.lib().bpf_obj_pin(m.fd, str(path).encode()), str(path), "pin")
