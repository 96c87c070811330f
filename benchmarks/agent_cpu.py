"""B3 companion: the agents' CPU per TCP_CRR transaction between two pods on two nodes, read from
``/proc/<pid>/stat`` of both agents around each run, with the Hubble events they took
(``seen_flows``) and, first, the same agents idle for as long. Steadier than the B3 ratio on
a busy machine, and says how much of the two cores the agents take from the traffic.

Run as root: ``.venv/bin/python benchmarks/agent_cpu.py [--rounds 3] [--seconds 3]
[--set KEY=VALUE ...]`` (e.g. ``--set hubble.enabled=false``). Prints only.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import _lab

from pylium.adapters.agentapi import AgentClient

LAB = "hbcpu"
PORT = 5001
NODES = ("n1", "n2")


def cpu_seconds(pid: int) -> float:
    """User + system time of the process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = [flag for value in args.set for flag in ("--set", value)]
    servers = _lab.Servers()
    with _lab.lab(LAB, 2, *_lab.NATIVE, *extra) as lab:
        try:
            binary = _lab.build_tcp_rr(lab.home)
            client = lab.pod("client", "n1")
            server = lab.pod("server", "n2")
            rr_server = _lab.tcp_rr_server(binary, PORT)
            servers.start(_lab.in_netns(server["netns"], *rr_server, cpu=_lab.SERVER_CPU))
            time.sleep(2)  # n1 learns the server's endpoint
            _lab.tcp_rr(binary, client["netns"], server["ip"], PORT, 0.5)
            pids = [int(lab.state()["pids"][f"agent-{n}"]) for n in NODES]

            def used() -> float:
                return sum(cpu_seconds(pid) for pid in pids)

            def seen() -> int:
                status = (AgentClient(lab.dir / n / "pylium.sock") for n in NODES)
                return sum(int(c.get("/v1/hubble/status")["seen_flows"]) for c in status)

            start = used()
            time.sleep(args.seconds)
            print(f"idle: agents' CPU {used() - start:.2f} s in {args.seconds} s", flush=True)
            for r in range(args.rounds):
                time.sleep(1)
                cpu0, seen0, t0 = used(), seen(), time.monotonic()
                tps = _lab.tcp_rr(
                    binary, client["netns"], server["ip"], PORT, args.seconds, mode="crr"
                )
                time.sleep(0.3)  # the readers' last batch
                elapsed, spent = time.monotonic() - t0, used() - cpu0
                transactions = tps * args.seconds
                events = seen() - seen0
                print(
                    f"round {r + 1}: {tps:.0f} trans/s; agents' CPU {spent:.2f} s in "
                    f"{elapsed:.1f} s ({spent / elapsed:.0%} of a core), "
                    f"{spent / transactions * 1e6:.0f} us per transaction; "
                    f"{events / transactions:.1f} events per transaction",
                    flush=True,
                )
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
