"""L3: daemons started and stopped by PID (never by name), optionally inside a network namespace.

A process is started in a namespace with ``nsenter --net=/run/netns/NS`` (which execs, so the
PID recorded is the daemon's own); ``ip netns exec`` is avoided because it also remounts
``/sys``. Stopping sends SIGTERM, waits, then SIGKILL; a zombie counts as stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from pylium.base.errors import LabError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a daemon to take)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    cgroup: Path | None = None,
) -> int:
    """Start a detached daemon (own session, output to ``log_path``), in the cgroup v2
    directory ``cgroup`` when given (it joins before exec, so nothing runs outside); returns
    its PID."""
    cmd = list(argv)
    if netns:
        cmd = ["nsenter", f"--net=/run/netns/{netns}", "--", *cmd]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=devnull,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                preexec_fn=(lambda: _join_cgroup(cgroup)) if cgroup is not None else None,
            )
        except OSError as err:
            raise LabError(f"cannot start {argv[0]}: {err}") from err
    proc.returncode = 0  # detached on purpose: nobody waits here, so no ResourceWarning
    return proc.pid


def _join_cgroup(cgroup: Path) -> None:
    with open(cgroup / "cgroup.procs", "w") as procs:
        procs.write("0")  # 0: the writing process itself


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, *, grace: float = 5.0, kill: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (SIGKILL at once with ``kill``, as a
    crash would end it); no error if already gone."""
    steps = [(signal.SIGKILL, 5.0)] if kill else [(signal.SIGTERM, grace), (signal.SIGKILL, 5.0)]
    for sig, wait in steps:
        if not alive(pid):
            _reap(pid)
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid):
                return
            time.sleep(0.05)
    if alive(pid):
        raise LabError(f"process {pid} survived SIGKILL")


def pids_naming(path: str) -> list[int]:
    """Live processes whose command line contains ``path`` (a lab's own state directory): the
    daemons a crash may have started without recording their PID. Each is then ended by PID."""
    found = []
    needle = path.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if needle in cmdline.read() and alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found
