"""L3: raw map access by fd with fixed-size binary keys and values; per-CPU values aware.

Each map module defines its layout once, as :class:`Layout` (a ``struct`` format plus the C
struct's name and member names, which ``tests/datapath/test_layouts.py`` checks against the
object's BTF), and wraps a :class:`RawMap` with typed methods.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

BPF_ANY = 0
_ENOTSUPP = 524
"""The kernel's own "operation not supported" (a map type without batch operations)."""


@functools.cache
def _compiled(fmt: str) -> struct.Struct:
    return struct.Struct(fmt)


@dataclass(frozen=True, slots=True)
class Layout:
    """A C struct as Python sees it: its name, ``struct`` format and members in order
    (padding members included, named as in C)."""

    c_name: str
    fmt: str
    members: tuple[str, ...]

    @property
    def struct(self) -> struct.Struct:
        return _compiled(self.fmt)

    @property
    def size(self) -> int:
        return self.struct.size

    def offsets(self) -> dict[str, tuple[int, int]]:
        """member -> (byte offset, byte size), computed from the format."""
        out: dict[str, tuple[int, int]] = {}
        offset = 0
        codes = struct.Struct(self.fmt).format.lstrip("<>=!@")
        items = [c for c in _split(codes)]
        for name, code in zip(self.members, items, strict=True):
            size = struct.calcsize("<" + code)
            out[name] = (offset, size)
            offset += size
        return out


def _split(codes: str) -> Iterator[str]:
    count = ""
    for ch in codes:
        if ch.isdigit():
            count += ch
            continue
        yield count + ch
        count = ""


class RawMap:
    def __init__(
        self, fd: int, key: Layout, value: Layout, *, name: str, percpu: bool = False
    ) -> None:
        self.fd = fd
        self.key = key
        self.value = value
        self.name = name
        self.percpu = percpu
        self.cpus = libbpf.lib().libbpf_num_possible_cpus() if percpu else 1
        # per-CPU values are rounded up to 8 bytes per CPU by the kernel
        self.value_stride = (value.size + 7) // 8 * 8 if percpu else value.size

    def update(self, key: bytes, value: bytes) -> None:
        if self.percpu:
            value = value.ljust(self.value_stride, b"\0") * self.cpus
        rc = libbpf.lib().bpf_map_update_elem(self.fd, key, value, BPF_ANY)
        libbpf.check(rc, self.name, "update")

    def update_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Write every (key, value) in order, in one ``BPF_MAP_UPDATE_BATCH`` syscall where
        the kernel has it for this map type (else, and for per-CPU maps, one by one)."""
        done = 0
        if len(items) > 1 and not self.percpu:
            count = ctypes.c_uint32(len(items))
            keys = b"".join(k for k, _ in items)
            values = b"".join(v for _, v in items)
            rc = libbpf.lib().bpf_map_update_batch(self.fd, keys, values, ctypes.byref(count), None)
            if rc >= 0:
                return
            if -rc not in (errno.EINVAL, errno.EOPNOTSUPP, _ENOTSUPP):
                libbpf.check(rc, self.name, "update batch")
            done = count.value  # written before the kernel gave up; the rest one by one
        for key, value in items[done:]:
            self.update(key, value)

    def lookup(self, key: bytes) -> list[bytes] | None:
        """The value (one per CPU for per-CPU maps), or None when absent."""
        buf = ctypes.create_string_buffer(self.value_stride * self.cpus)
        rc = libbpf.lib().bpf_map_lookup_elem(self.fd, key, buf)
        if rc < 0:
            if ctypes.get_errno() == 2 or rc == -2:
                return None
            libbpf.check(rc, self.name, "lookup")
        raw = buf.raw
        return [
            raw[i * self.value_stride : i * self.value_stride + self.value.size]
            for i in range(self.cpus)
        ]

    def delete(self, key: bytes) -> bool:
        rc = libbpf.lib().bpf_map_delete_elem(self.fd, key)
        if rc < 0:
            if ctypes.get_errno() == 2 or rc == -2:
                return False
            libbpf.check(rc, self.name, "delete")
        return True

    def iter_keys(self) -> Iterator[bytes]:
        prev: bytes | None = None
        nxt = ctypes.create_string_buffer(self.key.size)
        while True:
            rc = libbpf.lib().bpf_map_get_next_key(self.fd, prev, nxt)
            if rc < 0:
                if ctypes.get_errno() == 2 or rc == -2:
                    return
                libbpf.check(rc, self.name, "next key")
            prev = nxt.raw
            yield prev


def open_pinned(path: str) -> int:
    """An fd for a map pinned at ``path`` (another process's agent, or after a restart)."""
    fd = libbpf.lib().bpf_obj_get(path.encode())
    if fd < 0:
        raise DatapathError(path, "open pinned map", "not found or not a BPF object")
    return int(fd)
