"""L3: an eBPF object loaded through libbpf, its maps pinned under a BPF root so that they
survive the loader (a restarted agent reuses them; programs attached to devices keep running).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import TracebackType

from pylium.adapters.bpf import libbpf
from pylium.base.errors import DatapathError

TC_ACT_OK = 0
TC_ACT_SHOT = 2
TC_ACT_REDIRECT = 7


class BpfObject:
    """``with BpfObject(path, pin_dir) as obj:`` opens and loads; maps are pinned by name."""

    def __init__(self, path: Path, pin_dir: Path | None = None) -> None:
        self.path = path
        self.pin_dir = pin_dir
        self._obj: int | None = None

    def load(self) -> BpfObject:
        lib = libbpf.lib()
        obj = lib.bpf_object__open_file(str(self.path).encode(), None)
        if not obj:
            libbpf.check(-(ctypes.get_errno() or 22), str(self.path), "open")
        self._obj = obj
        if self.pin_dir is not None:
            self.pin_dir.mkdir(parents=True, exist_ok=True)
            m = lib.bpf_object__next_map(obj, None)
            while m:
                name = lib.bpf_map__name(m).decode()
                if not name.startswith("."):  # .rodata/.bss are per object, not shared state
                    libbpf.check(
                        lib.bpf_map__set_pin_path(m, str(self.pin_dir / name).encode()),
                        name,
                        "set pin path",
                    )
                m = lib.bpf_object__next_map(obj, m)
        try:
            libbpf.check(lib.bpf_object__load(obj), str(self.path), "load")
        except DatapathError:
            self.close()
            raise
        return self

    def _handle(self) -> int:
        if self._obj is None:
            raise DatapathError(str(self.path), "use", "object not loaded")
        return self._obj

    def map_fd(self, name: str) -> int:
        m = libbpf.lib().bpf_object__find_map_by_name(self._handle(), name.encode())
        if not m:
            raise DatapathError(name, "find map", f"not in {self.path.name}")
        return int(libbpf.lib().bpf_map__fd(m))

    def prog_fd(self, name: str) -> int:
        p = libbpf.lib().bpf_object__find_program_by_name(self._handle(), name.encode())
        if not p:
            raise DatapathError(name, "find program", f"not in {self.path.name}")
        return int(libbpf.lib().bpf_program__fd(p))

    def close(self) -> None:
        if self._obj is not None:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self.load() if self._obj is None else self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def prog_test_run(prog_fd: int, packet: bytes, *, out_size: int = 4096) -> tuple[int, bytes]:
    """Run a program on ``packet`` with BPF_PROG_TEST_RUN: (return code, output packet)."""
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(max(out_size, len(packet) + 256))
    opts = libbpf.TestRunOpts(
        sz=ctypes.sizeof(libbpf.TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(data_out, ctypes.c_void_p),
        data_size_in=len(packet),
        data_size_out=len(data_out),
        repeat=1,
    )
    libbpf.check(
        libbpf.lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)),
        f"prog fd {prog_fd}",
        "test run",
    )
    return int(opts.retval), data_out.raw[: opts.data_size_out]
