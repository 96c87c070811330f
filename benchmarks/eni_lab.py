"""ENI IPAM in a lab (moto EC2, operator and agents as processes): time to the watermark with
the ENI's device in place, EC2 calls per allocated IP, and the time of a pod's CNI ADD.

Brings up a two-node lab with ``--ipam eni`` under a temporary ``PYLIUM_HOME`` (lab ``bnNNNN``),
measures, and takes it down:

- ``watermark``: from the start of ``lab up`` until both nodes' pools hold ``pre-allocate``
  (8) free addresses on an ENI the operator created and attached, and that ENI's device is in
  the node (the lab's sync process made it); ``up`` is when ``lab up`` returned (agents
  registered).
- ``ec2_calls_per_ip``: the operator's own count of EC2 calls
  (``cilium_operator_ec2_api_duration_seconds_count``, every operation) over the secondary
  addresses EC2 holds on the nodes' attached ENIs, after the watermark and again after
  ``--pods`` pods on n1 (one by one, with ``max-above-watermark`` 0).
- ``pod_add``: the median time of ``lab pod run`` (CNI ADD: IP, veth, endpoint, ENI rules).

Run: ``.venv/bin/python benchmarks/eni_lab.py [--pods N]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from typing import Any

from pylium.adapters.netlink import netns as nl
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.lab import cluster, vpc
from pylium.runtime.settings import load

PRE_ALLOCATE = 8


def at_watermark(store_url: str, lab_vpc: vpc.LabVPC) -> bool:
    store = open_store(store_url)
    try:
        for node in lab_vpc.nodes:
            cn = ResourceClient(store).get("CiliumNode", node)
            if cn is None:
                return False
            pool = (cn.body.get("spec", {}).get("ipam") or {}).get("pool") or {}
            used = ((cn.body.get("status") or {}).get("ipam") or {}).get("used") or {}
            enis = ((cn.body.get("status") or {}).get("eni") or {}).get("enis") or {}
            macs = set(nl.link_macs(lab_vpc.nodes[node]["netns"]).values())
            if len(pool) - len(used) < PRE_ALLOCATE or not enis:
                return False
            if not all(str(e.get("mac", "")).lower() in macs for e in enis.values()):
                return False
        return True
    finally:
        store.close()


def ec2_calls(config: dict[str, str]) -> int:
    url = f"http://{config['operator-prometheus-serve-addr']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as resp:
        text = resp.read().decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("cilium_operator_ec2_api_duration_seconds_count")
        )
    )


def secondary_ips(lab_vpc: vpc.LabVPC) -> int:
    ec2 = vpc.ec2_client(lab_vpc.endpoint)
    instances = [n["instance-id"] for n in lab_vpc.nodes.values()]
    enis = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": instances}]
    )["NetworkInterfaces"]
    return sum(1 for e in enis for p in e["PrivateIpAddresses"] if not p["Primary"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=6)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="pylium-bench-eni-")
    os.environ["PYLIUM_HOME"] = home
    name = f"bn{os.getpid() % 10000}"
    resolved = load(values_files=[], sets=["eni.enabled=true"])
    out: dict[str, Any] = {}
    start = time.monotonic()
    state = cluster.up(name=name, nodes=2, store="local", configmap=resolved.as_configmap())
    try:
        out["up_s"] = round(time.monotonic() - start, 2)
        lab_dir = cluster.state_dir(name)
        lab_vpc = vpc.LabVPC.load(lab_dir)
        assert lab_vpc is not None
        while not at_watermark(state.store_url, lab_vpc):
            time.sleep(0.05)
        out["watermark_s"] = round(time.monotonic() - start, 2)
        config = json.loads((lab_dir / "config.json").read_text())
        calls, ips = ec2_calls(config), secondary_ips(lab_vpc)
        out["at_watermark"] = {"ec2_calls": calls, "ips": ips, "per_ip": round(calls / ips, 2)}
        times = []
        for i in range(args.pods):
            t0 = time.monotonic()
            cluster.add_pod(name, "n1", f"p{i}")
            times.append(time.monotonic() - t0)
        while not at_watermark(state.store_url, lab_vpc):
            time.sleep(0.05)
        calls, ips = ec2_calls(config), secondary_ips(lab_vpc)
        out[f"after_{args.pods}_pods"] = {
            "ec2_calls": calls,
            "ips": ips,
            "per_ip": round(calls / ips, 2),
        }
        out["pod_add_median_s"] = round(statistics.median(times), 2)
        out["pod_add_max_s"] = round(max(times), 2)
    finally:
        cluster.down(name, force=True)
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
