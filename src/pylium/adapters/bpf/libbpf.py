"""L3: a thin ctypes binding to libbpf (``libbpf.so.1``, Debian's libbpf1 1.1).

Only the calls pylium uses, each with its argument and return types declared. Every failure
becomes a :class:`~pylium.base.errors.DatapathError` naming the object, the operation and the
errno text; libbpf's own diagnostics are captured and appended.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import os
from ctypes import (
    CFUNCTYPE,
    Structure,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

from pylium.base.errors import DatapathError

_lib: Any = None
_messages: list[str] = []

# libbpf_set_print's callback gets a va_list; vsnprintf from libc formats it.
_PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def lib() -> Any:
    """The loaded library (once per process), with prototypes declared."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        handle = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as err:
        raise DatapathError("libbpf.so.1", "load", f"{err} (install libbpf1)") from err
    protos: dict[str, tuple[Any, list[Any]]] = {
        "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
        "bpf_map__name": (c_char_p, [c_void_p]),
        "bpf_map__fd": (c_int, [c_void_p]),
        "bpf_map__set_pin_path": (c_int, [c_void_p, c_char_p]),
        "bpf_map__pin": (c_int, [c_void_p, c_char_p]),
        "bpf_map__unpin": (c_int, [c_void_p, c_char_p]),
        "bpf_map__is_internal": (ctypes.c_bool, [c_void_p]),
        "bpf_map__inner_map": (c_void_p, [c_void_p]),
        "bpf_map__set_value_size": (c_int, [c_void_p, c_uint32]),
        "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
        "bpf_map__initial_value": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
        "bpf_map__set_initial_value": (c_int, [c_void_p, c_void_p, c_size_t]),
        "bpf_object__btf": (c_void_p, [c_void_p]),
        "btf__find_by_name_kind": (c_int, [c_void_p, c_char_p, c_uint32]),
        "btf__type_by_id": (c_void_p, [c_void_p, c_uint32]),
        "btf__name_by_offset": (c_char_p, [c_void_p, c_uint32]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
        "bpf_map_update_batch": (
            c_int,
            [c_int, c_void_p, c_void_p, ctypes.POINTER(c_uint32), c_void_p],
        ),
        "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_obj_get": (c_int, [c_char_p]),
        "bpf_obj_pin": (c_int, [c_int, c_char_p]),
        "bpf_map_create": (c_int, [c_int, c_char_p, c_uint32, c_uint32, c_uint32, c_void_p]),
        "bpf_map_get_fd_by_id": (c_int, [c_uint32]),
        "bpf_prog_test_run_opts": (c_int, [c_int, c_void_p]),
        "bpf_prog_attach": (c_int, [c_int, c_int, c_int, c_uint32]),
        "bpf_prog_detach2": (c_int, [c_int, c_int, c_int]),
        "bpf_prog_query": (
            c_int,
            [c_int, c_int, c_uint32, ctypes.POINTER(c_uint32), c_void_p, ctypes.POINTER(c_uint32)],
        ),
        "bpf_prog_get_fd_by_id": (c_int, [c_uint32]),
        "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, ctypes.POINTER(c_uint32)]),
        "bpf_tc_hook_create": (c_int, [c_void_p]),
        "bpf_tc_attach": (c_int, [c_void_p, c_void_p]),
        "bpf_tc_detach": (c_int, [c_void_p, c_void_p]),
        "bpf_tc_query": (c_int, [c_void_p, c_void_p]),
        "libbpf_num_possible_cpus": (c_int, []),
        "libbpf_probe_bpf_helper": (c_int, [c_int, c_int, c_void_p]),
        "libbpf_set_print": (c_void_p, [c_void_p]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(handle, name)
        fn.restype = restype
        fn.argtypes = argtypes
    libc = _libc()
    libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]

    def _print(level: int, fmt: bytes, args: int) -> int:
        buf = ctypes.create_string_buffer(1024)
        libc.vsnprintf(buf, len(buf), fmt, args)
        _messages.append(buf.value.decode(errors="replace").strip())
        del _messages[:-50]
        return 0

    global _print_cb
    _print_cb = _PRINT_FN(_print)  # must stay referenced for the life of the process
    handle.libbpf_set_print(ctypes.cast(_print_cb, c_void_p))
    _lib = handle
    return handle


_print_cb: Any = None


def last_messages(count: int = 5) -> str:
    """libbpf's latest diagnostics (for error messages)."""
    return " | ".join(m for m in _messages[-count:] if m)


def check(rc: int, obj: str, operation: str) -> int:
    """``rc`` when >= 0; otherwise a DatapathError with errno's text and libbpf's messages."""
    if rc >= 0:
        _messages.clear()
        return rc
    code = -rc  # libbpf 1.x returns -errno from every call
    text = os.strerror(code) if code else "failed"
    detail = last_messages()
    _messages.clear()
    raise DatapathError(
        obj,
        operation,
        f"{text} ({errno_mod.errorcode.get(code, code)})"
        + (f"; libbpf: {detail}" if detail else ""),
    )


class TestRunOpts(Structure):
    """``struct bpf_test_run_opts`` (libbpf 1.1, 88 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class MapCreateOpts(Structure):
    """``struct bpf_map_create_opts`` (libbpf 1.1, 48 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("inner_map_fd", c_uint32),
        ("map_flags", c_uint32),
        ("map_extra", c_uint64),
        ("numa_node", c_uint32),
        ("map_ifindex", c_uint32),
    ]


class TcHook(Structure):
    """``struct bpf_tc_hook`` (libbpf 1.1, 24 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
        ("_pad", c_uint32),
    ]


class TcOpts(Structure):
    """``struct bpf_tc_opts`` (libbpf 1.1, 32 bytes)."""

    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
        ("_pad", c_uint32),
    ]
