"""The Hubble UI in headless Chromium: a lab with a client and a server pod, a deny policy and
traffic; ``pylium hubble ui`` (run in the lab's fabric namespace, as is the browser, so that
nothing leaves namespaces the lab made) serves a page that lists the lab's pods, draws them
on the service map, shows the dropped flow in the table and, selected, the policy that
denied it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import DENY_SERVER_INGRESS, FETCH, HTTP_SERVER, PYLIUM, Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
GET = (
    "import sys, urllib.request\n"
    "try: print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())\n"
    "except OSError as e: print('ERR', e)\n"
)


def in_netns(netns: str, *argv: str, timeout: float = 30) -> str:
    """Run in ``netns``, in a session of its own, so that a timeout also ends the helpers a
    program started (Chromium's renderers)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what the program left behind
    return out


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_ui_shows_pods_and_a_dropped_flow(cli: Cli, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    lab = f"u{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab)
    ui: subprocess.Popen[bytes] | None = None
    stack = contextlib.ExitStack()
    try:
        cli("lab", "pod", "run", "server", "--node", "n2", "--labels", "app=server",
            "--name", lab, "--", *HTTP_SERVER)  # fmt: skip
        cli("lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client",
            "--name", lab)  # fmt: skip
        pods = json.loads((cli.home / "labs" / lab / "lab.json").read_text())["pods"]
        server_ip = pods["default/server"]["ip"]

        def fetch(timeout: float = 3.0) -> str:
            return cli("lab", "pod", "exec", "client", "--name", lab, "--", sys.executable,
                       "-c", FETCH, server_ip, str(timeout)).stdout.strip()  # fmt: skip

        deadline = time.monotonic() + 20
        while fetch() != "200":
            assert time.monotonic() < deadline, "server never answered"
        (tmp_path / "deny.yaml").write_text(DENY_SERVER_INGRESS)
        cli("apply", "-f", str(tmp_path / "deny.yaml"))
        time.sleep(0.5)
        assert fetch(1.5) != "200"

        fab = f"pl-{lab}-fab"
        ui_log = stack.enter_context(open(tmp_path / "ui.log", "w"))  # noqa: SIM115
        ui = subprocess.Popen(
            ["ip", "netns", "exec", fab, PYLIUM, "hubble", "ui", "--lab", lab, "--port", "12000"],
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=ui_log,
        )
        base = "http://127.0.0.1:12000"
        deadline = time.monotonic() + 20
        while True:
            answer = in_netns(fab, sys.executable, "-c", GET, f"{base}/api/flows?verdict=DROPPED")
            if answer.startswith("{") and json.loads(answer)["flows"]:
                break
            assert time.monotonic() < deadline, f"UI never served a dropped flow: {answer}"
            time.sleep(0.5)
        assert (
            "cytoscape"
            in in_netns(fab, sys.executable, "-c", GET, f"{base}/vendor/cytoscape.min.js")[
                :2000
            ].lower()
        ), "the npm-installed cytoscape is not served (make setup)"

        profile = tmp_path / "chromium"
        dom = in_netns(
            fab,
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=6000",
            "--dump-dom",
            f"{base}/?select=dropped",
            timeout=90,
        )
        assert 'id="flows"' in dom, dom[:2000]
        # The lab's pods: listed, and drawn as workloads of the service map.
        assert 'data-pod="default/client"' in dom and 'data-pod="default/server"' in dom
        assert 'data-id="default/client"' in dom and 'data-id="default/server"' in dom
        # At least one dropped flow in the table, and the deciding policy in the detail panel.
        assert 'data-verdict="DROPPED"' in dom
        assert "denied by CiliumNetworkPolicy default/server-ingress" in dom
        assert 'id="deciding-policy"' in dom
        # The map itself was drawn by cytoscape (its canvas layers in the container).
        assert "<canvas" in dom
    finally:
        if ui is not None:
            ui.terminate()
            try:
                ui.wait(timeout=10)
            except subprocess.TimeoutExpired:
                ui.kill()
                ui.wait()
        stack.close()
        cli("lab", "down", "--name", lab, "--force", check=False)
