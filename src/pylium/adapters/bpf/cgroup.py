"""L3: attaching eBPF programs to cgroup v2 directories (socket-LB's hooks).

Programs attach with ``BPF_PROG_ATTACH`` and ``BPF_F_ALLOW_MULTI``: an attachment outlives
the loader (sockets keep being translated while the agent restarts) and does not stop other
programs in the hierarchy from attaching. :func:`attach` replaces programs of the same name
attached earlier (a restarted agent's new object): the new one goes in first, then the old
ones are detached, so no connect() in between escapes translation.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

BPF_F_ALLOW_MULTI = 2
_PROG_INFO_SIZE = 256
_PROG_INFO_NAME = slice(64, 80)
_MAX_PROGS = 64


class AttachType(IntEnum):
    """``enum bpf_attach_type`` values of the socket-address hooks."""

    CGROUP_INET4_CONNECT = 10
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_INET4_GETPEERNAME = 29


@dataclass(frozen=True, slots=True)
class Attached:
    prog_id: int
    name: str
    """The kernel's program name (the C function's, cut to 15 characters)."""


def _open(cgroup: Path) -> int:
    try:
        return os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise DatapathError(str(cgroup), "open cgroup", err.strerror or str(err)) from err


def prog_name(prog_fd: int) -> str:
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    size = ctypes.c_uint32(_PROG_INFO_SIZE)
    libbpf.check(
        libbpf.lib().bpf_obj_get_info_by_fd(prog_fd, info, ctypes.byref(size)),
        f"prog fd {prog_fd}",
        "get info",
    )
    return info.raw[_PROG_INFO_NAME].split(b"\0", 1)[0].decode()


def attached(cgroup: Path, attach_type: AttachType) -> list[Attached]:
    """Programs attached directly to ``cgroup`` for ``attach_type`` (not inherited ones)."""
    fd = _open(cgroup)
    try:
        ids = (ctypes.c_uint32 * _MAX_PROGS)()
        count = ctypes.c_uint32(_MAX_PROGS)
        flags = ctypes.c_uint32(0)
        libbpf.check(
            libbpf.lib().bpf_prog_query(
                fd, int(attach_type), 0, ctypes.byref(flags), ids, ctypes.byref(count)
            ),
            str(cgroup),
            f"query {attach_type.name}",
        )
        out = []
        for prog_id in list(ids)[: count.value]:
            pfd = libbpf.lib().bpf_prog_get_fd_by_id(prog_id)
            if pfd < 0:
                continue  # detached meanwhile
            try:
                out.append(Attached(int(prog_id), prog_name(pfd)))
            finally:
                os.close(pfd)
        return out
    finally:
        os.close(fd)


def attach(prog_fd: int, cgroup: Path, attach_type: AttachType) -> None:
    """Attach ``prog_fd`` at ``cgroup``, then detach earlier programs of the same name there
    (a no-op when this very program is attached already)."""
    name = prog_name(prog_fd)
    own_id = _prog_id(prog_fd)
    before = [a for a in attached(cgroup, attach_type) if a.name == name]
    if any(a.prog_id == own_id for a in before):
        return  # attached already (the kernel refuses the same program twice)
    fd = _open(cgroup)
    try:
        libbpf.check(
            libbpf.lib().bpf_prog_attach(prog_fd, fd, int(attach_type), BPF_F_ALLOW_MULTI),
            str(cgroup),
            f"attach {name} ({attach_type.name})",
        )
    finally:
        os.close(fd)
    for old in before:
        if old.prog_id != own_id:
            _detach_id(cgroup, attach_type, old.prog_id)


def detach(cgroup: Path, attach_type: AttachType, name: str) -> int:
    """Detach every program called ``name`` from ``cgroup``; how many were."""
    count = 0
    for a in attached(cgroup, attach_type):
        if a.name == name:
            _detach_id(cgroup, attach_type, a.prog_id)
            count += 1
    return count


def _prog_id(prog_fd: int) -> int:
    info = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    size = ctypes.c_uint32(_PROG_INFO_SIZE)
    libbpf.check(
        libbpf.lib().bpf_obj_get_info_by_fd(prog_fd, info, ctypes.byref(size)),
        f"prog fd {prog_fd}",
        "get info",
    )
    return int.from_bytes(info.raw[4:8], sys.byteorder)


def _detach_id(cgroup: Path, attach_type: AttachType, prog_id: int) -> None:
    pfd = libbpf.lib().bpf_prog_get_fd_by_id(prog_id)
    if pfd < 0:
        return  # gone already
    fd = _open(cgroup)
    try:
        rc = libbpf.lib().bpf_prog_detach2(pfd, fd, int(attach_type))
        if rc < 0 and -rc != 2:  # ENOENT: detached meanwhile
            libbpf.check(rc, str(cgroup), f"detach program {prog_id}")
    finally:
        os.close(fd)
        os.close(pfd)
