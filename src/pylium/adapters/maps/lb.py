"""L3: the load-balancer maps (Cilium's ``cilium_lb4_*`` shapes), from and to core rows.

C (bpf/lib/lb.h, bpf/bpf_sock.c)::

    struct lb4_key { __be32 address; __be16 dport; __u16 backend_slot; __u8 proto;
                     __u8 scope; __u8 pad[2]; };
    struct lb4_service { __u32 backend_id; __u16 count; __u16 rev_nat_index; __u8 flags;
                         __u8 flags2; __u16 qcount; };
    struct lb4_backend { __be32 address; __be16 port; __u8 proto; __u8 flags;
                         __u16 cluster_id; __u8 zone; __u8 pad; };
    struct lb4_reverse_nat { __be32 address; __be16 port; } __packed;
    struct ipv4_revnat_tuple { __u64 cookie; __be32 address; __be16 port; __u16 pad; };
    struct ipv4_revnat_entry { __be32 address; __be16 port; __u16 rev_nat_index; };
    struct lb4_affinity_key { union { __u32 client_ip; __u64 client_cookie; } client_id;
                              __u16 rev_nat_id; __u8 netns; __u8 pad1; __u32 pad2; } __packed;
    struct lb_affinity_val { __u64 last_used; __u32 backend_id; __u32 pad; } __packed;
    struct lb_affinity_match { __u32 backend_id; __u16 rev_nat_id; __u16 pad; } __packed;

| map | key -> value |
|---|---|
| ``pylium_lb4_services_v2`` | ``lb4_key`` -> ``lb4_service`` (slot 0: master; 1..: backend IDs) |
| ``pylium_lb4_backends_v3`` | ``__u32`` backend ID -> ``lb4_backend`` |
| ``pylium_lb4_reverse_nat`` | ``__u16`` rev-NAT ID -> ``lb4_reverse_nat`` |
| ``pylium_lb4_reverse_sk`` | ``ipv4_revnat_tuple`` -> ``ipv4_revnat_entry`` (written by bpf_sock) |
| ``pylium_lb4_maglev`` | ``__u16`` rev-NAT ID -> inner array (1 entry): ``__u32[M]`` backend IDs |
| ``pylium_lb4_affinity`` | ``lb4_affinity_key`` -> ``lb_affinity_val`` (written by bpf_sock) |
| ``pylium_lb_affinity_match`` | ``lb_affinity_match`` -> ``__u8`` (active backends, by the agent) |

A Maglev table is written into a new inner map, which is then inserted (or swapped in) under
the service's ID, so the datapath never reads a half-written table. M is the object's
``maglev_table_size`` (load it with :func:`sock_load_options`); a pinned outer map keeps the
inner size it was created with, so changing ``bpf-lb-maglev-table-size`` needs its pin
removed (the agent does that when the sizes differ).

Ports are in network byte order in every struct; the service flags word (u16) is split into
``flags`` (low byte) and ``flags2`` (high byte). :class:`LBMaps` applies the core's ordered
plan (:func:`pylium.core.lb.translate.plan`) and reads every row back as core :class:`Rows`
(after an agent restart, and for ``pylium bpf lb list``).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pylium.adapters.bpf import libbpf
from pylium.adapters.maps.base import Layout, RawMap, open_pinned
from pylium.base.errors import DatapathError
from pylium.core.lb.addr import BackendState, L3n4Addr, Protocol, Scope
from pylium.core.lb.translate import BackendValue, MapKind, Op, Rows, ServiceKey, ServiceValue

SERVICES = "pylium_lb4_services_v2"
BACKENDS = "pylium_lb4_backends_v3"
REV_NAT = "pylium_lb4_reverse_nat"
REVERSE_SK = "pylium_lb4_reverse_sk"
MAGLEV = "pylium_lb4_maglev"
AFFINITY = "pylium_lb4_affinity"
AFFINITY_MATCH = "pylium_lb_affinity_match"
NAMES = (SERVICES, BACKENDS, REV_NAT, REVERSE_SK, MAGLEV, AFFINITY, AFFINITY_MATCH)
SIZED = (SERVICES, BACKENDS, REV_NAT, MAGLEV, AFFINITY, AFFINITY_MATCH)
"""The maps ``bpf-lb-map-max`` sizes (the socket reverse map has its own size)."""
MAGLEV_CONSTANT = "maglev_table_size"
BPF_MAP_TYPE_ARRAY = 2
_MAP_INFO_SIZE = 96

SERVICE_KEY = Layout(
    "lb4_key", "=4s2sHBB2s", ("address", "dport", "backend_slot", "proto", "scope", "pad")
)
SERVICE_VALUE = Layout(
    "lb4_service",
    "=IHHBBH",
    ("backend_id", "count", "rev_nat_index", "flags", "flags2", "qcount"),
)
BACKEND_KEY = Layout("__u32", "=I", ("backend_id",))
BACKEND_VALUE = Layout(
    "lb4_backend",
    "=4s2sBBHBB",
    ("address", "port", "proto", "flags", "cluster_id", "zone", "pad"),
)
REV_NAT_KEY = Layout("__u16", "=H", ("rev_nat_index",))
REV_NAT_VALUE = Layout("lb4_reverse_nat", "=4s2s", ("address", "port"))
REVERSE_SK_KEY = Layout("ipv4_revnat_tuple", "=Q4s2sH", ("cookie", "address", "port", "pad"))
REVERSE_SK_VALUE = Layout("ipv4_revnat_entry", "=4s2sH", ("address", "port", "rev_nat_index"))

AFFINITY_KEY = Layout(
    "lb4_affinity_key", "=QHBBI", ("client_id", "rev_nat_id", "netns", "pad1", "pad2")
)
AFFINITY_VALUE = Layout("lb_affinity_val", "=QII", ("last_used", "backend_id", "pad"))
AFFINITY_MATCH_KEY = Layout("lb_affinity_match", "=IHH", ("backend_id", "rev_nat_id", "pad"))
AFFINITY_MATCH_VALUE = Layout("__u8", "=B", ("value",))

_PROTOCOLS = {p.number: p for p in Protocol}
_STATES = {
    0: BackendState.ACTIVE,
    1: BackendState.TERMINATING,
    2: BackendState.QUARANTINED,
    3: BackendState.MAINTENANCE,
}


def _ip4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    if address.version != 4:
        raise DatapathError(str(address), "encode", "IPv6 load balancing is not implemented")
    return address.packed


def _port(port: int) -> bytes:
    return port.to_bytes(2, "big")


def encode_service_key(key: ServiceKey) -> bytes:
    return SERVICE_KEY.struct.pack(
        _ip4(key.address),
        _port(key.port),
        key.slot,
        key.protocol.number,
        int(key.scope),
        b"\0\0",
    )


def decode_service_key(raw: bytes) -> ServiceKey:
    address, port, slot, proto, scope, _ = SERVICE_KEY.struct.unpack(raw)
    return ServiceKey(
        ipaddress.IPv4Address(address),
        int.from_bytes(port, "big"),
        _PROTOCOLS[proto],
        Scope(scope),
        slot,
    )


def encode_service_value(value: ServiceValue) -> bytes:
    return SERVICE_VALUE.struct.pack(
        value.backend_id,
        value.count,
        value.rev_nat_index,
        value.flags & 0xFF,
        value.flags >> 8 & 0xFF,
        value.qcount,
    )


def decode_service_value(raw: bytes) -> ServiceValue:
    backend_id, count, rev, flags, flags2, qcount = SERVICE_VALUE.struct.unpack(raw)
    return ServiceValue(
        backend_id=backend_id,
        count=count,
        qcount=qcount,
        rev_nat_index=rev,
        flags=flags | flags2 << 8,
    )


def encode_backend(value: BackendValue) -> bytes:
    a = value.address
    return BACKEND_VALUE.struct.pack(
        _ip4(a.address), _port(a.port), a.protocol.number, value.flags, 0, 0, 0
    )


def decode_backend(raw: bytes) -> BackendValue:
    address, port, proto, flags, _, _, _ = BACKEND_VALUE.struct.unpack(raw)
    return BackendValue(
        address=L3n4Addr(
            ipaddress.IPv4Address(address), int.from_bytes(port, "big"), _PROTOCOLS[proto]
        ),
        state=_STATES.get(flags, BackendState.MAINTENANCE),
    )


def encode_rev_nat(addr: L3n4Addr) -> bytes:
    return REV_NAT_VALUE.struct.pack(_ip4(addr.address), _port(addr.port))


def sock_load_options(
    table_size: int, node_port_range: tuple[int, int] = (30000, 32767)
) -> dict[str, dict[str, int]]:
    """BpfObject keyword arguments for bpf_sock: Maglev tables of ``table_size``, NodePorts in
    ``node_port_range``."""
    return {
        "constants": {
            MAGLEV_CONSTANT: table_size,
            "node_port_min": node_port_range[0],
            "node_port_max": node_port_range[1],
        },
        "inner_value_sizes": {MAGLEV: 4 * table_size},
    }


def host_load_options(table_size: int, map_max: int) -> dict[str, dict[str, int]]:
    """BpfObject keyword arguments for bpf_host, whose NodePort path shares these maps with
    bpf_sock: the same Maglev table size and ``bpf-lb-map-max`` (a pin of another shape
    could not be reused)."""
    return {
        "constants": {MAGLEV_CONSTANT: table_size},
        "inner_value_sizes": {MAGLEV: 4 * table_size},
        "max_entries": {name: map_max for name in SIZED},
    }


def _map_info(fd: int, offset: int) -> int:
    info = ctypes.create_string_buffer(_MAP_INFO_SIZE)
    size = ctypes.c_uint32(_MAP_INFO_SIZE)
    libbpf.check(
        libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)), f"map fd {fd}", "info"
    )
    return int(struct.unpack_from("=I", info.raw, offset)[0])


def map_value_size(fd: int) -> int:
    """``bpf_map_info.value_size`` of the map behind ``fd``."""
    return _map_info(fd, 12)


def map_max_entries(fd: int) -> int:
    """``bpf_map_info.max_entries`` of the map behind ``fd``."""
    return _map_info(fd, 16)


@dataclass(frozen=True, slots=True)
class Affinity:
    """One ``pylium_lb4_affinity`` entry: a client's backend for a service."""

    client: int
    """Network namespace cookie (``netns``), else the client IPv4 address as an integer."""
    netns: bool
    rev_nat_index: int
    backend_id: int
    last_used: int


@dataclass(frozen=True, slots=True)
class SockRevNat:
    """One ``pylium_lb4_reverse_sk`` entry: a socket translated to a backend."""

    cookie: int
    backend: tuple[ipaddress.IPv4Address, int]
    frontend: tuple[ipaddress.IPv4Address, int]
    rev_nat_index: int


class LBMaps:
    """The four maps by fd (a loaded bpf_sock's, or their pins)."""

    def __init__(self, fds: dict[str, int]) -> None:
        self.services = RawMap(fds[SERVICES], SERVICE_KEY, SERVICE_VALUE, name=SERVICES)
        self.backends = RawMap(fds[BACKENDS], BACKEND_KEY, BACKEND_VALUE, name=BACKENDS)
        self.rev_nat = RawMap(fds[REV_NAT], REV_NAT_KEY, REV_NAT_VALUE, name=REV_NAT)
        self.reverse_sk = RawMap(fds[REVERSE_SK], REVERSE_SK_KEY, REVERSE_SK_VALUE, name=REVERSE_SK)
        self.affinity = RawMap(fds[AFFINITY], AFFINITY_KEY, AFFINITY_VALUE, name=AFFINITY)
        self.affinity_match = RawMap(
            fds[AFFINITY_MATCH], AFFINITY_MATCH_KEY, AFFINITY_MATCH_VALUE, name=AFFINITY_MATCH
        )
        self.maglev = RawMap(
            fds[MAGLEV], REV_NAT_KEY, Layout("__u32", "=I", ("map_id",)), name=MAGLEV
        )

    @classmethod
    def from_pins(cls, pin_dir: Path) -> LBMaps:
        return cls({name: open_pinned(str(pin_dir / name)) for name in NAMES})

    # -- writes -----------------------------------------------------------------------------

    def apply(self, ops: Iterable[Op]) -> None:
        """Apply core ops in the order given (``plan``'s upserts, then its deletes); a run of
        upserts into one map goes in one batch (a full sync writes tens of thousands)."""
        run: list[tuple[bytes, bytes]] = []
        run_map: RawMap | None = None
        for op in ops:
            target, key, value = self._encode(op)
            if value is not None and target is not None and target is run_map:
                run.append((key, value))
                continue
            if run_map is not None:
                run_map.update_many(run)
            run, run_map = [], None
            if value is not None and target is not None:
                run, run_map = [(key, value)], target
            elif op.kind is MapKind.MAGLEV:
                if op.value is None:
                    self.maglev.delete(key)
                else:
                    self.write_maglev(op.key, op.value)
            elif target is not None:
                target.delete(key)
        if run_map is not None:
            run_map.update_many(run)

    def _encode(self, op: Op) -> tuple[RawMap | None, bytes, bytes | None]:
        """The map an op writes (None: the Maglev map, written table by table), its key,
        and its value (None for deletes)."""
        upsert = op.value is not None
        if op.kind is MapKind.SERVICE:
            key = encode_service_key(op.key)
            return self.services, key, encode_service_value(op.value) if upsert else None
        if op.kind is MapKind.BACKEND:
            key = struct.pack("=I", op.key)
            return self.backends, key, encode_backend(op.value) if upsert else None
        if op.kind is MapKind.REV_NAT:
            key = struct.pack("=H", op.key)
            return self.rev_nat, key, encode_rev_nat(op.value) if upsert else None
        if op.kind is MapKind.AFFINITY_MATCH:
            rev, bid = op.key
            key = AFFINITY_MATCH_KEY.struct.pack(bid, rev, 0)
            return self.affinity_match, key, b"\x01" if upsert else None
        if op.kind is MapKind.MAGLEV:
            return None, struct.pack("=H", op.key), None
        raise DatapathError(op.kind.value, "apply", "map not implemented")

    def write_maglev(self, rev_nat_index: int, table: tuple[int, ...]) -> None:
        """Fill a new inner map with ``table``, then put it under the service's ID."""
        opts = libbpf.MapCreateOpts(sz=ctypes.sizeof(libbpf.MapCreateOpts))
        fd = libbpf.lib().bpf_map_create(
            BPF_MAP_TYPE_ARRAY, b"lb4_maglev_in", 4, 4 * len(table), 1, ctypes.byref(opts)
        )
        libbpf.check(fd, MAGLEV, f"create table for service {rev_nat_index}")
        try:
            value = struct.pack(f"={len(table)}I", *table)
            rc = libbpf.lib().bpf_map_update_elem(fd, struct.pack("=I", 0), value, 0)
            libbpf.check(rc, MAGLEV, f"fill table for service {rev_nat_index}")
            rc = libbpf.lib().bpf_map_update_elem(
                self.maglev.fd, struct.pack("=H", rev_nat_index), struct.pack("=I", fd), 0
            )
            libbpf.check(rc, MAGLEV, f"insert table for service {rev_nat_index}")
        finally:
            os.close(fd)

    def read_maglev(self) -> dict[int, tuple[int, ...]]:
        """Every service's Maglev table."""
        out = {}
        for raw in list(self.maglev.iter_keys()):
            values = self.maglev.lookup(raw)
            if not values:
                continue
            fd = libbpf.lib().bpf_map_get_fd_by_id(struct.unpack("=I", values[0])[0])
            if fd < 0:
                continue  # replaced meanwhile
            try:
                size = map_value_size(fd)
                buf = ctypes.create_string_buffer(size)
                rc = libbpf.lib().bpf_map_lookup_elem(fd, struct.pack("=I", 0), buf)
                libbpf.check(rc, MAGLEV, "read table")
                out[struct.unpack("=H", raw)[0]] = struct.unpack(f"={size // 4}I", buf.raw)
            finally:
                os.close(fd)
        return out

    # -- reads ------------------------------------------------------------------------------

    def read(self) -> Rows:
        """Every service, backend and reverse-NAT row the kernel holds."""
        services = {}
        for raw in list(self.services.iter_keys()):
            values = self.services.lookup(raw)
            if values:
                services[decode_service_key(raw)] = decode_service_value(values[0])
        backends = {}
        for raw in list(self.backends.iter_keys()):
            values = self.backends.lookup(raw)
            if values:
                backends[struct.unpack("=I", raw)[0]] = decode_backend(values[0])
        rev_nat = {}
        for raw in list(self.rev_nat.iter_keys()):
            values = self.rev_nat.lookup(raw)
            if values:
                address, port = REV_NAT_VALUE.struct.unpack(values[0])
                rev = struct.unpack("=H", raw)[0]
                # The protocol is not in the row; the master entries name it.
                rev_nat[rev] = (ipaddress.IPv4Address(address), int.from_bytes(port, "big"))
        rows_rev: dict[int, L3n4Addr] = {}
        for key, value in services.items():
            if key.slot == 0 and value.rev_nat_index in rev_nat:
                ip, port = rev_nat[value.rev_nat_index]
                rows_rev[value.rev_nat_index] = L3n4Addr(ip, port, key.protocol)
        for rev, (ip, port) in rev_nat.items():
            rows_rev.setdefault(rev, L3n4Addr(ip, port))
        matches = set()
        for raw in list(self.affinity_match.iter_keys()):
            bid, rev, _ = AFFINITY_MATCH_KEY.struct.unpack(raw)
            matches.add((rev, bid))
        return Rows(
            services=services,
            backends=backends,
            rev_nat=rows_rev,
            maglev=self.read_maglev(),
            affinity=frozenset(matches),
        )

    def affinities(self) -> list[Affinity]:
        out = []
        for raw in list(self.affinity.iter_keys()):
            values = self.affinity.lookup(raw)
            if not values:
                continue
            client, rev, netns, _, _ = AFFINITY_KEY.struct.unpack(raw)
            last_used, bid, _ = AFFINITY_VALUE.struct.unpack(values[0])
            out.append(Affinity(client, bool(netns), rev, bid, last_used))
        return out

    def sock_rev_nat(self) -> list[SockRevNat]:
        out = []
        for raw in list(self.reverse_sk.iter_keys()):
            values = self.reverse_sk.lookup(raw)
            if not values:
                continue
            cookie, b_addr, b_port, _ = REVERSE_SK_KEY.struct.unpack(raw)
            f_addr, f_port, rev = REVERSE_SK_VALUE.struct.unpack(values[0])
            out.append(
                SockRevNat(
                    cookie,
                    (ipaddress.IPv4Address(b_addr), int.from_bytes(b_port, "big")),
                    (ipaddress.IPv4Address(f_addr), int.from_bytes(f_port, "big")),
                    rev,
                )
            )
        return out
