"""L3: masquerading of pod traffic leaving the cluster, with nftables in the node's namespace
(Cilium's iptables-based masquerading, ``enable-bpf-masquerade: false``): packets from this
node's pod CIDRs to anything outside the non-masquerade CIDRs leave with the address of the
interface they leave by (only through ``egress-masquerade-interfaces`` when that is set).
The rules live in their own table (``ip pylium``), replaced as a whole, so re-applying is
idempotent and nothing else is touched."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence

from pylium.base.errors import DatapathError

TABLE = "pylium"


def nft_interface(pattern: str) -> str:
    """An ``egress-masquerade-interfaces`` entry (iptables style: ``eth+`` is every name
    starting with eth) as an nftables ``oifname`` operand (``"eth*"``)."""
    return '"' + (pattern[:-1] + "*" if pattern.endswith("+") else pattern) + '"'


def apply(
    pod_cidrs: Sequence[ipaddress.IPv4Network],
    keep: Sequence[ipaddress.IPv4Network],
    interfaces: Sequence[str] = (),
) -> None:
    """Masquerade ``pod_cidrs`` -> not ``keep`` (the native-routing or cluster CIDRs), only
    when leaving through one of ``interfaces`` (``egress-masquerade-interfaces``) if given."""
    sources = ", ".join(str(c) for c in pod_cidrs)
    kept = ", ".join(str(c) for c in keep)
    match = f"ip saddr {{ {sources} }} ip daddr != {{ {kept} }}"
    rules = (
        [f"oifname {nft_interface(i)} {match} masquerade" for i in interfaces]
        if interfaces
        else [f"{match} masquerade"]
    )
    rule = "\n    ".join(rules) if sources else ""
    script = (
        f"table ip {TABLE} {{}}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    {rule}\n"
        "  }\n"
        "}\n"
    )
    try:
        result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise DatapathError(
            "nftables", "masquerade", "nft not found (apt install nftables)"
        ) from err
    if result.returncode != 0:
        raise DatapathError("nftables", "masquerade", result.stderr.strip())
