"""Testing helper (not part of the layered package): a container runtime's side of the CNI wire
protocol, for tests that make many pods.

:class:`CniRuntime` speaks to the plugin exactly as a runtime does (``CNI_*`` environment, the
network configuration on stdin, the result or error object on stdout, the exit code), inside
the node's network namespace. ``exec=True`` executes the ``pylium-cni`` binary each time; the
default hands each invocation to one long-lived process that runs the plugin's own entry point
(:func:`pylium.cni.main.run`) on the same environment and stdin, which saves the ~0.2 s of
interpreter start-up an exec costs (a thousand pods would otherwise spend minutes starting
Python). Run as ``python -m pylium.testing.cniruntime``, this module is that process: one JSON
request a line in (``{"env": {...}, "stdin": "..."}``), one answer a line out
(``{"code": N, "stdout": "..."}``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGIN = str(Path(sys.executable).with_name("pylium-cni"))


@dataclass(frozen=True, slots=True)
class CniAnswer:
    code: int
    stdout: str

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


class CniRuntime:
    """Invokes the plugin in ``node_netns`` (a name under /run/netns) with ``config``."""

    def __init__(self, node_netns: str, config: dict[str, Any], *, timeout: float = 120) -> None:
        self.nsenter = ("nsenter", f"--net=/run/netns/{node_netns}", "--")
        self.config = config
        self.timeout = timeout
        self._server: subprocess.Popen[str] | None = None

    def env(
        self, command: str, container_id: str, netns: str, pod: str, namespace: str = "default"
    ) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/run/netns/{netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni",
            "CNI_ARGS": f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
        }

    def __call__(
        self, env: dict[str, str], *, config: dict[str, Any] | None = None, exec: bool = False
    ) -> CniAnswer:
        stdin = json.dumps(config or self.config)
        if exec:
            done = subprocess.run(
                [*self.nsenter, PLUGIN],
                input=stdin,
                env={"PATH": os.environ["PATH"], **env},
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            return CniAnswer(done.returncode, done.stdout)
        server = self._start()
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps({"env": env, "stdin": stdin}) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"the CNI runtime process exited ({server.wait(5)})")
        answer = json.loads(line)
        return CniAnswer(int(answer["code"]), str(answer["stdout"]))

    def _start(self) -> subprocess.Popen[str]:
        if self._server is None:
            self._server = subprocess.Popen(
                [*self.nsenter, sys.executable, "-m", __name__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        return self._server

    def close(self) -> None:
        if self._server is not None:
            try:
                self._server.communicate(timeout=10)  # EOF on stdin ends it
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.communicate()
            self._server = None

    def __enter__(self) -> CniRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve() -> None:
    from pylium.cni.main import run

    for line in sys.stdin:
        request = json.loads(line)
        code, out = run(request["env"], request["stdin"].encode())
        answer = {"code": code, "stdout": "" if out is None else json.dumps(out)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
