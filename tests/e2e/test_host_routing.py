"""BPF host routing against Legacy in a native-routing lab (``bpf.hostLegacyRouting``).

The same scenario in both modes: a server pod on n2 whose CiliumNetworkPolicy admits the
client pod on n1 on port 8080 and nobody else; the other pod on n1 is dropped. Both modes must
give the same answers, the same Hubble flows at the server's node (delivered to the endpoint,
denied by policy with reason 133) and the same metrics; ``pylium status --node`` says which
mode runs (``Host: BPF`` / ``Host: Legacy``). What differs is who forwards: with BPF host
routing the nodes' stacks forward none of the pods' packets (their IP ForwDatagrams counters
do not move: from-container sends them out of the device the FIB names, from-netdev delivers
them into the pod), with Legacy they forward every one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylium.testing.netstat import ip_forwarded

from .conftest import HTTP_SERVER, Cli, wait_for
from .test_pods import NATIVE
from .test_policy import ALLOW_CLIENT, connect_from

pytestmark = [pytest.mark.root, pytest.mark.slow]


def flows(cli: Cli, *args: str) -> str:
    return cli("observe", "--to-pod", "default/server", "--last", "200", *args).stdout


@pytest.mark.parametrize("mode", ["bpf", "legacy"])
def test_host_routing_modes(cli: Cli, tmp_path: Path, mode: str) -> None:
    lab = f"hr{mode[0]}{os.getpid() % 10000}"
    legacy = ("--set", "bpf.hostLegacyRouting=true") if mode == "legacy" else ()
    cli("lab", "up", "--nodes", "2", "--name", lab, *NATIVE, *legacy)
    try:
        shown = "BPF" if mode == "bpf" else "Legacy"
        for node in ("n1", "n2"):
            assert f"Host: {shown}" in cli("status", "--node", node).stdout
        cli("lab", "pod", "run", "server", "--node", "n2", "--labels", "app=server",
            "--name", lab, "--", *HTTP_SERVER)  # fmt: skip
        cli("lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client", "--name", lab)
        cli("lab", "pod", "run", "other", "--node", "n1", "--labels", "app=other", "--name", lab)
        server_ip = cli.lab_state(lab)["pods"]["default/server"]["ip"]
        wait_for("the server", lambda: connect_from(cli, lab, "client", server_ip) == "ok")
        (tmp_path / "allow.yaml").write_text(ALLOW_CLIENT)
        cli("apply", "-f", str(tmp_path / "allow.yaml"))
        wait_for("enforcement", lambda: connect_from(cli, lab, "other", server_ip, 1.0) != "ok")

        nodes = [f"pl-{lab}-n1", f"pl-{lab}-n2"]
        before = [ip_forwarded(ns) for ns in nodes]
        for _ in range(3):
            assert connect_from(cli, lab, "client", server_ip) == "ok"
        assert connect_from(cli, lab, "other", server_ip, 1.0) == "TimeoutError"
        moved = sum(ip_forwarded(ns) for ns in nodes) - sum(before)
        if mode == "bpf":
            assert moved == 0, f"the nodes' stacks forwarded {moved} packets"
        else:
            assert moved >= 3 * 4  # each allowed connection: SYN, ACK, data, FIN at least

        # Hubble at the server's node: the same verdicts either way.
        delivered = flows(cli, "--from-pod", "default/client")
        assert "to-endpoint FORWARDED (TCP Flags: SYN)" in delivered
        denied = flows(cli, "--from-pod", "default/other", "--verdict", "DROPPED")
        assert "Policy denied DROPPED (TCP Flags: SYN)" in denied
        sent = cli("observe", "--from-pod", "default/client", "--to-pod", "default/server",
                   "--last", "200").stdout  # fmt: skip
        # n1's from-container: out of eth0 itself (BPF), or handed to n1's stack (Legacy)
        assert ("to-network FORWARDED" if mode == "bpf" else "to-stack FORWARDED") in sent
        drops = cli("metrics", "list", "--node", "n2", "-p", "cilium_drop_count_total").stdout
        assert 'reason="Policy denied"' in drops or "Policy denied" in drops, drops
    finally:
        cli("lab", "down", "--name", lab, check=False)
