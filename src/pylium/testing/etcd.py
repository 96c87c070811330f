"""Testing helper (not part of the layered package): a real ``etcd`` server on loopback.

``etcd_server(tmp_path)`` starts Debian's ``/usr/bin/etcd`` on 127.0.0.1 with free ports and a
private data directory, waits until it answers ``/health``, and on exit kills it by PID and
removes the directory. ``stop()``/``start()`` restart the same member (same ports, same data),
which is what reconnect tests need.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pylium.adapters.procs import free_port as free_port  # the tests import it from here

ETCD_BINARY = "etcd"
START_TIMEOUT = 20.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL etcd if the test process dies without cleaning up."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(slots=True)
class EtcdServer:
    """One single-member etcd cluster; ``url`` is its client endpoint."""

    data_dir: Path
    client_port: int
    peer_port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("etcd is not running")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or restart) the server with the same ports and data; wait until healthy."""
        if self.running:
            return
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            shutil.which(ETCD_BINARY) or ETCD_BINARY,
            "--name=pylium-test",
            f"--data-dir={self.data_dir / 'member-data'}",
            "--logger=zap",
            "--log-level=warn",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=pylium-test={peer}",
        ]
        log = self.log_file.open("ab")
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._wait_healthy()

    def stop(self) -> None:
        """Kill the server by PID (SIGKILL: a crash, not a graceful leave) and reap it."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.process = None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as resp:
                    if json.loads(resp.read()).get("health") == "true":
                        return
            except (OSError, urllib.error.URLError, ValueError) as err:
                last = str(err)
            time.sleep(0.05)
        tail = self.log_file.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"etcd at {self.url} did not become healthy ({last}); log:\n{tail}")


@contextlib.contextmanager
def etcd_server(tmp_path: Path | None = None) -> Iterator[EtcdServer]:
    """A running etcd for the ``with`` block; killed by PID and its directory removed after."""
    base = Path(tempfile.mkdtemp(prefix="pylium-etcd-", dir=tmp_path))
    client_port = free_port()
    peer_port = free_port()
    while peer_port == client_port:
        peer_port = free_port()
    server = EtcdServer(
        data_dir=base, client_port=client_port, peer_port=peer_port, log_file=base / "etcd.log"
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
