"""L3: attaching programs to a device's tc hook (clsact, direct-action) through libbpf.

Runs in the calling thread's network namespace, or in ``netns`` (a path such as
``/var/run/netns/X``) entered with ``setns`` for the duration of the call only: the thread's
own namespace is restored before returning, even on error. Replacing an attached program is
hitless (``BPF_TC_F_REPLACE`` with the same handle and priority).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1
HANDLE = 1
PRIORITY = 1
CLONE_NEWNET = 0x40000000


@contextmanager
def in_netns(netns: Path | None) -> Iterator[None]:
    """Run the body in ``netns`` (this thread only), then return to the thread's own."""
    if netns is None:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(netns, os.O_RDONLY)
        except OSError as err:
            raise DatapathError(str(netns), "open netns", err.strerror or str(err)) from err
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise DatapathError(str(netns), "setns", os.strerror(ctypes.get_errno()))
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:  # leaving the thread elsewhere is fatal
                raise DatapathError("own netns", "setns back", os.strerror(ctypes.get_errno()))
    finally:
        os.close(own)


def ifindex(device: str | int) -> int:
    """``device``'s ifindex in the current namespace (an int is taken as one)."""
    if isinstance(device, int):
        return device
    try:
        return socket.if_nametoindex(device)
    except OSError as err:
        raise DatapathError(device, "lookup device", str(err)) from err


def _hook(device: str | int, ingress: bool) -> libbpf.TcHook:
    return libbpf.TcHook(
        sz=ctypes.sizeof(libbpf.TcHook),
        ifindex=ifindex(device),
        attach_point=BPF_TC_INGRESS if ingress else BPF_TC_EGRESS,
    )


def _opts(prog_fd: int = 0, flags: int = 0) -> libbpf.TcOpts:
    return libbpf.TcOpts(
        sz=ctypes.sizeof(libbpf.TcOpts),
        prog_fd=prog_fd,
        flags=flags,
        handle=HANDLE,
        priority=PRIORITY,
    )


def attach(
    device: str | int, prog_fd: int, *, ingress: bool = True, netns: Path | None = None
) -> None:
    """Attach ``prog_fd`` to ``device``'s tc ingress (or egress), replacing what is there."""
    lib = libbpf.lib()
    side = "ingress" if ingress else "egress"
    with in_netns(netns):
        hook = _hook(device, ingress)
        rc = lib.bpf_tc_hook_create(ctypes.byref(hook))
        if rc < 0 and rc != -errno.EEXIST:  # clsact exists already: fine
            libbpf.check(rc, str(device), "create clsact")
        opts = _opts(prog_fd, BPF_TC_F_REPLACE)
        libbpf.check(
            lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts)),
            str(device),
            f"attach tc {side} program",
        )


def attached(device: str | int, *, ingress: bool = True, netns: Path | None = None) -> int | None:
    """The id of the program on ``device``'s tc hook at pylium's handle/priority, or None."""
    with in_netns(netns):
        hook = _hook(device, ingress)
        opts = _opts()
        rc = libbpf.lib().bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts))
    if rc == -errno.ENOENT or rc == -errno.EINVAL:  # no filter, or no clsact qdisc at all
        return None
    libbpf.check(rc, str(device), "query tc program")
    return int(opts.prog_id)


def detach(device: str | int, *, ingress: bool = True, netns: Path | None = None) -> bool:
    """Remove pylium's program from ``device``'s tc hook; False when none was there."""
    with in_netns(netns):
        hook = _hook(device, ingress)
        opts = _opts()
        rc = libbpf.lib().bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    if rc == -errno.ENOENT or rc == -errno.EINVAL:
        return False
    libbpf.check(rc, str(device), "detach tc program")
    return True
