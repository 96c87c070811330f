"""The endpoints and ipcache rows the datapath tests run against, written through the map
wrappers: two local pods (A, B), a remote pod CIDR behind node 192.168.1.12."""

from __future__ import annotations

import ipaddress

from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.maps import endpoints, ipcache

POD_A = ipaddress.IPv4Address("10.0.1.10")
POD_B = ipaddress.IPv4Address("10.0.1.11")
REMOTE = ipaddress.IPv4Address("10.0.2.20")
REMOTE_NODE = ipaddress.IPv4Address("192.168.1.12")
POD_B_MAC = bytes.fromhex("0a0000000b0b")
LXC_B_MAC = bytes.fromhex("0a00000000b1")
EP_A = endpoints.EndpointInfo(ifindex=11, endpoint_id=101, identity=1001)
EP_B = endpoints.EndpointInfo(
    ifindex=12, endpoint_id=102, identity=1002, mac=POD_B_MAC, node_mac=LXC_B_MAC
)
REMOTE_CIDR = ipaddress.IPv4Network("10.0.2.0/24")
REMOTE_ENTRY = ipcache.Entry(identity=6, tunnel_endpoint=REMOTE_NODE)


def seed(obj: BpfObject) -> None:
    eps = endpoints.EndpointsMap(obj.map_fd(endpoints.NAME))
    eps.upsert(POD_A, EP_A)
    eps.upsert(POD_B, EP_B)
    ipc = ipcache.IPCacheMap(obj.map_fd(ipcache.NAME))
    ipc.upsert(ipaddress.IPv4Network(f"{POD_A}/32"), ipcache.Entry(identity=1001))
    ipc.upsert(ipaddress.IPv4Network(f"{POD_B}/32"), ipcache.Entry(identity=1002))
    ipc.upsert(REMOTE_CIDR, REMOTE_ENTRY)
