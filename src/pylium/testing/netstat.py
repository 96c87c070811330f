"""What a network namespace's IP stack counted (``/proc/net/snmp``): tests tell with it whether
the kernel forwarded packets or the eBPF datapath sent them itself."""

from __future__ import annotations

import subprocess


def ip_forwarded(netns: str) -> int:
    """``Ip: ForwDatagrams`` of the named namespace (``ip netns``): the packets its stack
    forwarded. Packets that tc programs redirect never pass ``ip_forward`` and are not counted."""
    snmp = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    names, values = (line.split()[1:] for line in snmp if line.startswith("Ip:"))
    return int(values[names.index("ForwDatagrams")])
