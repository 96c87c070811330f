"""Hubble in a lab: the agents turn datapath events into flows with pods, identities, verdicts,
drop reasons and the policy that decided; ``pylium observe`` merges the nodes, filters like
``hubble observe``, follows, and exports JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pylium.adapters.agentapi import AgentClient
from pylium.adapters.hubbleapi.client import ObserverClient

from .conftest import DENY_SERVER_INGRESS, FETCH, HTTP_SERVER, PYLIUM, Cli, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

NSENTER = ("nsenter",)
# A fixed number of datagrams, not a duration: on a loaded machine a timed flood may send too
# few to fill the ring (CI once saw 9,336 events in 10 s, under the ring's ~18,700).
FLOOD_DATAGRAMS = 60_000
FLOOD = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
target = (sys.argv[1], 9)
for _ in range(int(sys.argv[2])):
    s.sendto(b"x", target)
"""


def test_flows_verdicts_policy_names_follow(cli: Cli, tmp_path: Path) -> None:
    lab = f"h{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab)
    try:
        cli(
            "lab",
            "pod",
            "run",
            "server",
            "--node",
            "n2",
            "--labels",
            "app=server",
            "--name",
            lab,
            "--",
            *HTTP_SERVER,
        )
        cli(
            "lab",
            "pod",
            "run",
            "client",
            "--node",
            "n1",
            "--labels",
            "app=client",
            "--name",
            lab,
        )
        server_ip = json.loads((cli.home / "labs" / lab / "lab.json").read_text())["pods"][
            "default/server"
        ]["ip"]

        def fetch(timeout: float = 3.0) -> str:
            return cli(
                "lab",
                "pod",
                "exec",
                "client",
                "--name",
                lab,
                "--",
                sys.executable,
                "-c",
                FETCH,
                server_ip,
                str(timeout),
            ).stdout.strip()

        deadline = time.monotonic() + 20
        while fetch() != "200":
            assert time.monotonic() < deadline, "server never answered"
        forwarded = cli(
            "observe",
            "--from-pod",
            "default/client",
            "--to-port",
            "8080",
            "--last",
            "50",
        ).stdout
        assert "default/client:" in forwarded and "-> default/server:8080" in forwarded
        assert "to-endpoint FORWARDED (TCP Flags: SYN)" in forwarded  # delivered on n2
        assert "to-overlay FORWARDED" in forwarded  # sent into the tunnel on n1

        # Follow while a deny policy starts dropping.
        export = tmp_path / "flows.jsonl"
        follower = subprocess.Popen(
            [
                PYLIUM,
                "observe",
                "-f",
                "--verdict",
                "DROPPED",
                "--print-policy-names",
                "--export",
                str(export),
                "--duration",
                "12",
            ],
            env=cli.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.5)
            (tmp_path / "deny.yaml").write_text(DENY_SERVER_INGRESS)
            cli("apply", "-f", str(tmp_path / "deny.yaml"))
            time.sleep(0.5)
            assert fetch(1.5) != "200"
            streamed, _ = follower.communicate(timeout=30)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.communicate()
        assert (
            "Policy denied DROPPED (TCP Flags: SYN) by CiliumNetworkPolicy default/server-ingress"
            in streamed
        )
        exported = [json.loads(line)["flow"] for line in export.read_text().splitlines()]
        drop = next(f for f in exported if f.get("drop_reason") == 133)
        assert drop["verdict"] == "DROPPED" and drop["drop_reason_desc"] == "POLICY_DENIED"
        assert drop["traffic_direction"] == "INGRESS" and drop["node_name"] == "n2"
        assert (
            drop["source"]["pod_name"] == "client" and "k8s:app=client" in drop["source"]["labels"]
        )
        assert drop["ingress_denied_by"] == [
            {
                "name": "server-ingress",
                "kind": "CiliumNetworkPolicy",
                "namespace": "default",
            }
        ]

        verdicts = cli(
            "observe",
            "--type",
            "policy-verdict",
            "--to-pod",
            "default/server",
            "-o",
            "json",
            "--last",
            "5",
        ).stdout.splitlines()
        assert verdicts and all(json.loads(v)["flow"]["event_type"]["type"] == 5 for v in verdicts)
        assert cli("observe", "--from-pod", "other/", "--last", "5").stdout == ""
        # Hubble's gRPC API: the lab's relay merges both nodes (n1 sends into the tunnel, n2
        # delivers), and each agent serves its own ring on its unix socket.
        relayed = [
            json.loads(line)["flow"]
            for line in cli(
                "observe", "--server", "relay", "--to-port", "8080", "-o", "json", "--last", "200"
            ).stdout.splitlines()
        ]
        assert {f["node_name"] for f in relayed} == {"n1", "n2"}
        assert any(f.get("ingress_denied_by") for f in relayed)
        n2_socket = f"unix:{cli.home / 'labs' / lab / 'n2' / 'hubble.sock'}"
        direct = cli(
            "observe",
            "--server",
            n2_socket,
            "--verdict",
            "DROPPED",
            "--last",
            "3",
            "--print-policy-names",
        ).stdout
        assert "by CiliumNetworkPolicy default/server-ingress" in direct
        parquet = tmp_path / "flows.parquet"
        cli(
            "observe",
            "--to-pod",
            "default/server",
            "--last",
            "100",
            "--export-parquet",
            str(parquet),
        )
        table = pq.read_table(parquet).drop_columns(["time"]).to_pylist()
        assert any(r["verdict"] == "DROPPED" and r["policies"] for r in table)
        with ObserverClient(f"unix:{cli.home / 'labs' / lab / 'hubble-relay.sock'}") as relay:
            assert relay.status().num_connected_nodes.value == 2
            assert sorted(n.name for n in relay.nodes()) == ["n1", "n2"]
        status = AgentClient(cli.home / "labs" / lab / "n2" / "pylium.sock").get(
            "/v1/hubble/status"
        )
        assert status["max_flows"] == 4095 and status["seen_flows"] >= status["num_flows"] > 0
    finally:
        cli("lab", "down", "--name", lab, check=False)


def test_event_burst_is_bounded_and_losses_are_reported(cli: Cli) -> None:
    """With monitor aggregation off every packet is an event: a datagram flood while the agent
    is paused makes far more than the ring holds. The flow buffer stays at its capacity, the
    agent keeps answering, and the events the datapath could not queue are reported (agent API
    and ServerStatus)."""
    lab = f"b{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "2", "--name", lab, "--set", "bpf.monitorAggregation=none")
    try:
        cli("lab", "pod", "run", "server", "--node", "n2", "--name", lab)
        cli("lab", "pod", "run", "client", "--node", "n1", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        server_ip, client_ns = (
            state["pods"]["default/server"]["ip"],
            state["pods"]["default/client"]["netns"],
        )
        n2 = AgentClient(cli.home / "labs" / lab / "n2" / "pylium.sock", timeout=10)

        def flood(datagrams: int) -> subprocess.CompletedProcess[str]:
            # One-byte UDP datagrams: each is an event on n2 (delivered to the pod, which
            # answers port unreachable: more events).
            sender = [*NSENTER, f"--net=/run/netns/{client_ns}", sys.executable, "-c", FLOOD]
            return subprocess.run(
                [*sender, server_ip, str(datagrams)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=300,
            )

        def reaches_n2() -> bool:
            before = n2.get("/v1/hubble/status")["seen_flows"]
            flood(1)
            time.sleep(0.2)
            return bool(n2.get("/v1/hubble/status")["seen_flows"] > before)

        # n1 learns the server pod's address through the store a moment after `pod run`.
        wait_for("the client's datagrams to reach n2", reaches_n2)
        # A reader that cannot keep up, at its extreme: the agent is paused for the whole flood,
        # whose events (at least one per datagram on n2, 56 bytes each) are several times what
        # the datapath's 1 MiB ring buffer holds; then it resumes.
        agent_pid = state["pids"]["agent-n2"]
        os.kill(agent_pid, signal.SIGSTOP)
        try:
            burst = flood(FLOOD_DATAGRAMS)
        finally:
            os.kill(agent_pid, signal.SIGCONT)
        # Answers (within the client's timeout) while the backlog drains.
        assert n2.get("/v1/healthz")["datapath"]["state"] == "Ok"
        assert burst.returncode == 0, burst.stderr
        time.sleep(1.5)  # the reader has drained the backlog and read the loss counter
        status = n2.get("/v1/hubble/status")
        assert status["num_flows"] <= status["max_flows"] == 4095, status  # bounded
        assert status["seen_flows"] > status["max_flows"], status
        assert status["lost_events"] > 0, status  # the reader fell behind and says so
        with ObserverClient(f"unix:{cli.home / 'labs' / lab / 'n2' / 'hubble.sock'}") as hubble:
            assert hubble.status().lost_events >= status["lost_events"]
    finally:
        cli("lab", "down", "--name", lab, check=False)
