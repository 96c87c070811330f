"""L3: attaching programs to a device's tc hook (clsact, direct-action) through libbpf.

Runs in the calling thread's network namespace (the agent lives in its node's). Replacing an
attached program is hitless (``BPF_TC_F_REPLACE`` with the same handle and priority).
"""

from __future__ import annotations

import ctypes
import errno
import socket
from ctypes import Structure, c_int, c_size_t, c_uint32

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1
HANDLE = 1
PRIORITY = 1


class TcHook(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
        ("_pad", c_uint32),
    ]


class TcOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
        ("_pad", c_uint32),
    ]


def _prototypes() -> object:
    lib = libbpf.lib()
    for name in ("bpf_tc_hook_create", "bpf_tc_hook_destroy"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = c_int
    for name in ("bpf_tc_attach", "bpf_tc_detach"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        getattr(lib, name).restype = c_int
    return lib


def ifindex(device: str) -> int:
    try:
        return socket.if_nametoindex(device)
    except OSError as err:
        raise DatapathError(device, "lookup device", str(err)) from err


def attach(device: str, prog_fd: int, *, ingress: bool = True) -> None:
    """Attach ``prog_fd`` to ``device``'s tc ingress (or egress), replacing what is there."""
    lib: object = _prototypes()
    hook = TcHook(
        sz=ctypes.sizeof(TcHook),
        ifindex=ifindex(device),
        attach_point=BPF_TC_INGRESS if ingress else BPF_TC_EGRESS,
    )
    rc = lib.bpf_tc_hook_create(ctypes.byref(hook))  # type: ignore[attr-defined]
    if rc < 0 and rc != -errno.EEXIST:
        libbpf.check(rc, device, "create clsact")
    opts = TcOpts(
        sz=ctypes.sizeof(TcOpts),
        prog_fd=prog_fd,
        flags=BPF_TC_F_REPLACE,
        handle=HANDLE,
        priority=PRIORITY,
    )
    libbpf.check(
        lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)),  # type: ignore[attr-defined]
        device,
        "attach tc program",
    )
