"""L3: compiling the eBPF C sources with clang, cached by the hash of every source file.

Objects land in ``bpf/build/<program>-<hash>.o``; a change to any file under ``bpf/`` gives a
new hash, so a stale object is never loaded (older builds of the program are removed).
``python -m pylium.adapters.bpf.build`` builds every program (``make bpf``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from pathlib import Path

from pylium.base.errors import DatapathError

BPF_DIR = Path(__file__).resolve().parents[4] / "bpf"
"""The C sources, at the top of the repository (an editable install)."""


def _sources_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".c", ".h") and "build" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(program: str, *, root: Path = BPF_DIR) -> Path:
    """The compiled object of ``<root>/<program>.c``, building it if needed."""
    source = root / f"{program}.c"
    if not source.exists():
        raise DatapathError(str(source), "build", "no such eBPF source")
    out = root / "build" / f"{program}-{_sources_hash(root)}.o"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # concurrent builders never share it
    cmd = [
        "clang",
        "-O2",
        "-g",
        "-Wall",
        "-Werror",
        "-target",
        "bpf",
        f"-I/usr/include/{platform.machine()}-linux-gnu",
        "-I",
        str(root),
        "-c",
        str(source),
        "-o",
        str(tmp),
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise DatapathError(str(source), "build", "clang not found (apt install clang)") from err
    if result.returncode != 0:
        raise DatapathError(str(source), "build", result.stderr.strip()[-2000:])
    tmp.replace(out)
    for old in out.parent.glob(f"{program}-*.o"):
        if old != out:
            old.unlink(missing_ok=True)
    return out


def programs(root: Path = BPF_DIR) -> list[str]:
    """Every program source: one ``bpf/<name>.c`` per attach point."""
    return sorted(p.stem for p in root.glob("*.c"))


if __name__ == "__main__":
    for name in programs():
        print(build(name))
