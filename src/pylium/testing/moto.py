"""Testing helper (not part of the layered package): a real moto EC2 server on loopback.

``moto_server()`` starts moto's EC2-protocol server (``moto.server`` from the venv, through the
launcher the lab uses too, which fixes its address picks: ``pylium.lab.vpc.MOTO_LAUNCHER``) on
a free 127.0.0.1 port, waits until it answers, and on exit kills it by PID. ``reset()`` wipes
its state between tests. Nothing ever talks to real AWS: clients get dummy credentials and the
loopback endpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pylium.adapters.procs import free_port
from pylium.lab.vpc import CREDENTIALS, REGION
from pylium.lab.vpc import MOTO_LAUNCHER as _LAUNCHER
from pylium.testing.etcd import _die_with_parent

START_TIMEOUT = 120.0  # generous: the 2-core VM is shared with other test runs


@dataclass(slots=True)
class MotoServer:
    port: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a process (the operator) that should talk to this server."""
        return {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()

    def client(self) -> Any:
        """A boto3 EC2 client for this server (retries off: tests count calls)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[MotoServer]:
    server = MotoServer(port=free_port(), log_file=log_dir / "moto.log")
    with server.log_file.open("wb") as log:
        server.process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, "-H", "127.0.0.1", "-p", str(server.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
            preexec_fn=_die_with_parent,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/moto-api/", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start: {server.log_file.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(server.process.pid, signal.SIGKILL)
                server.process.wait()
