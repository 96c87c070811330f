"""Cost per packet of bpf_host's cil_from_netdev with the NodePort path (root; a few seconds).

BPF_PROG_TEST_RUN, kernel-timed, 200,000 repeats per sample, the median of 5 samples, on the
datapath tests' maps (tests/datapath/test_nodeport.py's service and addresses): a packet that
is no service traffic with the NodePort path off and on, an established connection's packet
to a local backend (DNAT, policy, conntrack, redirect into the pod) and to a remote one in
native routing (DNAT, SNAT, FIB), and that backend's reply (un-SNAT, reverse DNAT, FIB).
Run: ``.venv/bin/python benchmarks/nodeport_path.py`` from the repository root.
"""

from __future__ import annotations

import ipaddress
import shutil
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.datapath import test_nodeport as t
from tests.datapath.packets import ACK, ipv4_tcp
from tests.datapath.seed import POD_B, seed

from pylium.adapters.bpf.build import build
from pylium.adapters.bpf.objects import BpfObject, prog_test_run_timed
from pylium.adapters.maps import ipcache, lb

REPEAT = 200_000


def main() -> None:
    pin = Path(f"/sys/fs/bpf/pylium-bench-np-{uuid.uuid4().hex[:6]}")
    objs: list[BpfObject] = []
    try:
        lxc = BpfObject(build("bpf_lxc"), pin).load()
        objs.append(lxc)
        seed(lxc)
        ipc = ipcache.IPCacheMap(lxc.map_fd(ipcache.NAME))
        ipc.upsert(ipaddress.IPv4Network(f"{t.NODE}/32"), ipcache.Entry(identity=1))
        ipc.upsert(ipaddress.IPv4Network("10.0.3.0/24"), ipcache.Entry(identity=3003))
        sock = BpfObject(build("bpf_sock"), pin).load()
        objs.append(sock)
        maps = lb.LBMaps({n: sock.map_fd(n) for n in lb.NAMES})

        def host(enable: int) -> BpfObject:
            constants = {
                "enable_nodeport": enable,
                "ipv4_nodeport": t._be32(t.NODE),
                "ipv4_gateway": t._be32(t.ROUTER),
                "monitor_aggregation": 3,
            }
            objs.append(BpfObject(build("bpf_host"), pin, constants=constants).load())
            return objs[-1]

        on, off = host(1), host(0)

        def ns(obj: BpfObject, packet: bytes) -> float:
            fd = obj.prog_fd("cil_from_netdev")
            return statistics.median(
                prog_test_run_timed(fd, packet, repeat=REPEAT)[1] for _ in range(5)
            )

        other = ipv4_tcp(t.CLIENT, "10.0.3.99", 40000, 22, ACK)
        print(f"no service traffic, NodePort path off: {ns(off, other):6.0f} ns")
        print(f"no service traffic, NodePort path on:  {ns(on, other):6.0f} ns")
        t.program(maps, [(str(POD_B), "n1")])
        packet = ipv4_tcp(t.CLIENT, str(t.NODE), 40000, t.NODE_PORT, ACK)
        print(f"NodePort -> local backend:             {ns(on, packet):6.0f} ns")
        t.program(maps, [(t.NATIVE_REMOTE, "n2")])
        packet = ipv4_tcp(t.CLIENT, str(t.NODE), 40001, t.NODE_PORT, ACK)
        print(f"NodePort -> remote backend (SNAT):     {ns(on, packet):6.0f} ns")
        reply = ipv4_tcp(t.NATIVE_REMOTE, str(t.NODE), 8080, 40001, ACK)
        print(f"the remote backend's reply:            {ns(on, reply):6.0f} ns")
    finally:
        for obj in objs:
            obj.close()
        shutil.rmtree(pin, ignore_errors=True)


if __name__ == "__main__":
    main()
