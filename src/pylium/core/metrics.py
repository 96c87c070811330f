"""L2: the agent's datapath metrics as upstream names them: the forward/drop counters of the
BPF metrics map (``cilium_metrics``: (reason, direction) -> packets, bytes) turned into the rows
of ``cilium_drop_count_total`` / ``cilium_drop_bytes_total`` {reason, direction} and
``cilium_forward_count_total`` / ``cilium_forward_bytes_total`` {direction}, with the monitor's
words for each drop reason (``pkg/monitor/api/drop.go``), as ``cilium-dbg metrics list`` and
Prometheus show them; the pressure of a BPF map (entries / max entries); the operator's IPAM
address counts from the CiliumNodes.

Pure: the map's content arrives as a mapping; nothing here reads the kernel.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

DIRECTIONS = {1: "INGRESS", 2: "EGRESS", 3: "SERVICE"}
"""The datapath's direction numbers as upstream's metrics label them (else ``UNKNOWN``)."""

DROP_REASON_TEXT: Mapping[int, str] = {
    0: "Success",
    2: "Invalid packet",
    3: "Interface",
    4: "Interface Decrypted",
    5: "LB, sock cgroup: No backend slot entry found",
    6: "LB, sock cgroup: No backend entry found",
    7: "LB, sock cgroup: Reverse entry update failed",
    8: "LB, sock cgroup: Reverse entry stale",
    9: "Fragmented packet",
    10: "Fragmented packet entry update failed",
    11: "Missed tail call to custom program",
    130: "Invalid source mac",
    131: "Invalid destination mac",
    132: "Invalid source ip",
    133: "Policy denied",
    134: "Invalid packet",
    135: "CT: Truncated or invalid header",
    136: "Fragmentation needed",
    137: "CT: Unknown L4 protocol",
    138: "CT: Can't create entry from packet",
    139: "Unsupported L3 protocol",
    140: "Missed tail call",
    141: "Error writing to packet",
    142: "Unknown L4 protocol",
    143: "Unknown ICMPv4 code",
    144: "Unknown ICMPv4 type",
    145: "Unknown ICMPv6 code",
    146: "Unknown ICMPv6 type",
    147: "Error retrieving tunnel key",
    148: "Error retrieving tunnel options",
    149: "Invalid Geneve option",
    150: "Unknown L3 target address",
    151: "Stale or unroutable IP",
    152: "No matching local container found",
    153: "Error while correcting L3 checksum",
    154: "Error while correcting L4 checksum",
    155: "CT: Map insertion failed",
    156: "Invalid IPv6 extension header",
    157: "IP fragmentation not supported",
    158: "Service backend not found",
    160: "No tunnel/encapsulation endpoint (datapath BUG!)",
    161: "NAT 46/64 not enabled",
    162: "Reached EDT rate-limiting drop horizon",
    163: "Unknown connection tracking state",
    164: "Local host is unreachable",
    165: "No configuration available to perform policy decision",
    166: "Unsupported L2 protocol",
    167: "No mapping for NAT masquerade",
    168: "Unsupported protocol for NAT masquerade",
    169: "FIB lookup failed",
    170: "Encapsulation traffic is prohibited",
    171: "Invalid identity",
    172: "Unknown sender",
    173: "NAT not needed",
    174: "Is a ClusterIP",
    175: "First logical datagram fragment not found",
    176: "Forbidden ICMPv6 message",
    177: "Denied by LB src range check",
    178: "Socket lookup failed",
    179: "Socket assign failed",
    180: "Proxy redirection not supported for protocol",
    181: "Policy denied by denylist",
    182: "VLAN traffic disallowed by VLAN filter",
    183: "Incorrect VNI from VTEP",
    184: "Failed to update or lookup TC buffer",
    185: "No SID was found for the IP address",
    186: "SRv6 state was removed during tail call",
    187: "L3 translation from IPv4 to IPv6 failed (NAT46)",
    188: "L3 translation from IPv6 to IPv4 failed (NAT64)",
    189: "Authentication required",
    190: "No conntrack map found",
    191: "No nat map found",
    192: "Invalid ClusterID",
    193: "Unsupported packet protocol for DSR encapsulation",
    194: "No egress gateway found",
    195: "Traffic is unencrypted",
    196: "TTL exceeded",
    197: "No node ID found",
    198: "Rate limited",
    199: "IGMP handled",
    200: "IGMP subscribed",
    201: "Multicast handled",
    202: "Host datapath not ready",
    203: "Endpoint policy program not available",
    204: "No Egress IP configured",
    205: "Punt to proxy",
    206: "No device",
}


def drop_reason_text(reason: int) -> str:
    """The monitor's words for a drop reason (upstream prints the number when it has none)."""
    return DROP_REASON_TEXT.get(reason, str(reason))


def direction_text(direction: int) -> str:
    return DIRECTIONS.get(direction, "UNKNOWN")


class Counts(Protocol):
    """One metrics-map value summed over CPUs (the adapter's ``Counter``)."""

    @property
    def count(self) -> int: ...

    @property
    def bytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DatapathRows:
    """The label values and totals of the four datapath families."""

    drops: dict[tuple[str, str], tuple[int, int]]
    """(reason text, direction) -> (packets, bytes)."""
    forwards: dict[str, tuple[int, int]]
    """direction -> (packets, bytes)."""


def datapath_rows(totals: Mapping[tuple[int, int], Counts]) -> DatapathRows:
    """The metrics map's (reason, direction) totals as metric rows; reason 0 is forwarded,
    any other a drop. Reasons sharing a text (134 and 2) are added up."""
    drops: dict[tuple[str, str], tuple[int, int]] = {}
    forwards: dict[str, tuple[int, int]] = {}
    for (reason, direction), counter in sorted(totals.items()):
        dir_text = direction_text(direction)
        if reason == 0:
            packets, size = forwards.get(dir_text, (0, 0))
            forwards[dir_text] = (packets + counter.count, size + counter.bytes)
        else:
            key = (drop_reason_text(reason), dir_text)
            packets, size = drops.get(key, (0, 0))
            drops[key] = (packets + counter.count, size + counter.bytes)
    return DatapathRows(drops, forwards)


def map_pressure(entries: int, max_entries: int) -> float:
    """``cilium_bpf_map_pressure``: how full a map is, 0.0-1.0 (0 for a map without room)."""
    if max_entries <= 0:
        return 0.0
    return min(entries / max_entries, 1.0)


def identity_type(identity: int) -> str:
    """``cilium_identity``'s ``type`` label as upstream names it: ``reserved`` (1-255),
    ``node_local`` (CIDR identities: the local scope, 2^24 and up), else ``cluster_local``."""
    if identity < 256:
        return "reserved"
    if identity >= 1 << 24:
        return "node_local"
    return "cluster_local"


def ipam_ips(cilium_nodes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``cilium_operator_ipam_ips`` {type}: over every CiliumNode, the addresses it may hand
    out (``available``: its ENI/IP pool, else the usable addresses of its pod CIDRs) and the
    ones its agent reports in ``status.ipam.used``."""
    available = used = 0
    for body in cilium_nodes:
        spec = (body.get("spec") or {}).get("ipam") or {}
        status = (body.get("status") or {}).get("ipam") or {}
        used += len(status.get("used") or {})
        if spec.get("pool"):
            available += len(spec["pool"])
            continue
        for cidr in spec.get("podCIDRs") or []:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            available += max(net.num_addresses - 2, 1) if net.version == 4 else net.num_addresses
    return {"available": available, "used": used}
