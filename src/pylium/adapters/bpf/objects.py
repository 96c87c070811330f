"""L3: an eBPF object loaded through libbpf: load-time constants, maps pinned under a BPF root
so that they survive the loader (a restarted agent reuses them; programs attached to devices
keep running), tc attachment, and BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pylium.adapters.bpf import btf, libbpf, tc
from pylium.base.errors import DatapathError

TC_ACT_OK = 0
TC_ACT_SHOT = 2
TC_ACT_REDIRECT = 7
RODATA = ".rodata"


class BpfObject:
    """``with BpfObject(path, pin_dir, constants={...}) as obj:`` opens and loads.

    Maps are pinned by name under ``pin_dir`` (an existing compatible pin is reused, contents
    included). ``constants`` set ``volatile const`` globals of the object's ``.rodata`` before
    the load, so one compiled object serves every configuration; ``inner_value_sizes`` resize
    the inner-map template of maps of maps (a Maglev table of M entries); ``max_entries``
    resize maps (a pin of another size is not reused: libbpf refuses the load).
    """

    def __init__(
        self,
        path: Path,
        pin_dir: Path | None = None,
        *,
        constants: Mapping[str, int] | None = None,
        inner_value_sizes: Mapping[str, int] | None = None,
        max_entries: Mapping[str, int] | None = None,
    ) -> None:
        self.path = path
        self.pin_dir = pin_dir
        self.constants = dict(constants or {})
        self.inner_value_sizes = dict(inner_value_sizes or {})
        self.max_entries = dict(max_entries or {})
        self._obj: int | None = None

    def load(self) -> BpfObject:
        lib = libbpf.lib()
        obj = lib.bpf_object__open_file(str(self.path).encode(), None)
        if not obj:
            libbpf.check(-(ctypes.get_errno() or 22), str(self.path), "open")
        self._obj = obj
        try:
            self._set_pin_paths(obj)
            self._set_constants(obj)
            self._set_inner_sizes(obj)
            libbpf.check(lib.bpf_object__load(obj), str(self.path), "load")
        except DatapathError:
            self.close()
            raise
        return self

    def _set_pin_paths(self, obj: int) -> None:
        if self.pin_dir is None:
            return
        lib = libbpf.lib()
        self.pin_dir.mkdir(parents=True, exist_ok=True)
        m = lib.bpf_object__next_map(obj, None)
        while m:
            if not lib.bpf_map__is_internal(m):  # .rodata/.bss belong to this load only
                name = lib.bpf_map__name(m).decode()
                libbpf.check(
                    lib.bpf_map__set_pin_path(m, str(self.pin_dir / name).encode()),
                    name,
                    "set pin path",
                )
            m = lib.bpf_object__next_map(obj, m)

    def _set_constants(self, obj: int) -> None:
        if not self.constants:
            return
        lib = libbpf.lib()
        where = f"{self.path.name} {RODATA}"
        rodata = lib.bpf_object__find_map_by_name(obj, RODATA.encode())
        layout = btf.datasec_vars(lib.bpf_object__btf(obj), RODATA) if rodata else {}
        size = ctypes.c_size_t()
        data = lib.bpf_map__initial_value(rodata, ctypes.byref(size)) if rodata else None
        for name, value in self.constants.items():
            if name not in layout or not data:
                known = ", ".join(sorted(layout)) or "none"
                raise DatapathError(where, "set constant", f"no {name} (constants: {known})")
            offset, width = layout[name]
            try:
                raw = value.to_bytes(width, sys.byteorder)
            except OverflowError as err:
                raise DatapathError(
                    where, "set constant", f"{name}={value} does not fit {width} bytes"
                ) from err
            ctypes.memmove(data + offset, raw, width)

    def _set_inner_sizes(self, obj: int) -> None:
        lib = libbpf.lib()
        for name, size in self.inner_value_sizes.items():
            outer = lib.bpf_object__find_map_by_name(obj, name.encode())
            inner = lib.bpf_map__inner_map(outer) if outer else None
            if not inner:
                raise DatapathError(name, "resize inner map", f"no map of maps {name}")
            libbpf.check(lib.bpf_map__set_value_size(inner, size), name, "resize inner map")
        for name, entries in self.max_entries.items():
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if not m:
                raise DatapathError(name, "set max entries", f"no map {name}")
            libbpf.check(lib.bpf_map__set_max_entries(m, entries), name, "set max entries")

    def loaded_constants(self) -> dict[str, int]:
        """The load-time constants as the kernel holds them (read from the .rodata map)."""
        obj = self._handle()
        lib = libbpf.lib()
        rodata = lib.bpf_object__find_map_by_name(obj, RODATA.encode())
        if not rodata:
            return {}
        size = ctypes.c_size_t()
        lib.bpf_map__initial_value(rodata, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        key = ctypes.c_uint32(0)
        libbpf.check(
            lib.bpf_map_lookup_elem(lib.bpf_map__fd(rodata), ctypes.byref(key), buf),
            f"{self.path.name} {RODATA}",
            "lookup",
        )
        layout = btf.datasec_vars(lib.bpf_object__btf(obj), RODATA)
        return {
            name: int.from_bytes(buf.raw[offset : offset + width], sys.byteorder)
            for name, (offset, width) in layout.items()
        }

    def _handle(self) -> int:
        if self._obj is None:
            raise DatapathError(str(self.path), "use", "object not loaded")
        return self._obj

    def map_fd(self, name: str) -> int:
        """The fd of map ``name`` (``.rodata`` for the constants section)."""
        m = libbpf.lib().bpf_object__find_map_by_name(self._handle(), name.encode())
        if not m:
            raise DatapathError(name, "find map", f"not in {self.path.name}")
        return int(libbpf.lib().bpf_map__fd(m))

    def prog_fd(self, name: str) -> int:
        p = libbpf.lib().bpf_object__find_program_by_name(self._handle(), name.encode())
        if not p:
            raise DatapathError(name, "find program", f"not in {self.path.name}")
        return int(libbpf.lib().bpf_program__fd(p))

    def attach(
        self, program: str, device: str | int, *, ingress: bool = True, netns: Path | None = None
    ) -> None:
        """Attach ``program`` to ``device``'s tc ingress (or egress), in ``netns`` if given."""
        tc.attach(device, self.prog_fd(program), ingress=ingress, netns=netns)

    def close(self) -> None:
        """Unload (programs attached to devices and pinned maps stay in the kernel)."""
        if self._obj is not None:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self.load() if self._obj is None else self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


SKB_CTX_SIZE = 192
"""``sizeof(struct __sk_buff)``; a test run accepts only a few of its fields non-zero."""
SKB_MARK_OFFSET = 8


def prog_test_run(
    prog_fd: int, packet: bytes, *, out_size: int = 4096, mark: int = 0
) -> tuple[int, bytes]:
    """Run a program on ``packet`` with BPF_PROG_TEST_RUN: (return code, output packet).
    ``mark`` sets ``skb->mark`` (through a ``struct __sk_buff`` context)."""
    retval, out, _ = _test_run(prog_fd, packet, out_size=out_size, mark=mark, repeat=1)
    return retval, out


def prog_test_run_timed(
    prog_fd: int, packet: bytes, *, repeat: int, mark: int = 0
) -> tuple[int, float]:
    """Run a program ``repeat`` times on ``packet`` in the kernel: (return code of the last
    run, mean nanoseconds per run as the kernel measured it)."""
    retval, _, duration = _test_run(prog_fd, packet, out_size=4096, mark=mark, repeat=repeat)
    return retval, float(duration)


def _test_run(
    prog_fd: int, packet: bytes, *, out_size: int, mark: int, repeat: int
) -> tuple[int, bytes, int]:
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(max(out_size, len(packet) + 256))
    ctx = bytearray(SKB_CTX_SIZE)
    ctx[SKB_MARK_OFFSET : SKB_MARK_OFFSET + 4] = mark.to_bytes(4, sys.byteorder)
    ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx))
    opts = libbpf.TestRunOpts(
        sz=ctypes.sizeof(libbpf.TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(data_out, ctypes.c_void_p),
        data_size_in=len(packet),
        data_size_out=len(data_out),
        repeat=repeat,
    )
    if mark:
        opts.ctx_in = ctypes.cast(ctx_in, ctypes.c_void_p)
        opts.ctx_size_in = len(ctx)
    libbpf.check(
        libbpf.lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)),
        f"prog fd {prog_fd}",
        "test run",
    )
    return int(opts.retval), data_out.raw[: opts.data_size_out], int(opts.duration)
