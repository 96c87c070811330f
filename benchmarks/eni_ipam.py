"""ENI IPAM against moto: time to the pre-allocation watermark, EC2 calls per allocated IP.

A moto EC2 server on loopback (started here), a VPC, subnets and instances; the operator's ENI
controller reconciling in a thread (as the operator's loop does, polling every 50 ms instead
of being woken by the CiliumNode watch); the agent's IPAM in ``eni`` mode on a SQLite store.

- ``watermark``: from the agent creating its CiliumNode (``wait_for_cidrs``) to its pool
  holding ``pre-allocate`` addresses, for pre-allocate 8 (eth0 only) and 16 (a second ENI
  created and attached), median of the rounds; with the EC2 calls it took.
- ``growth``: 24 pods arriving one by one on an m5.large node (pre-allocate 8), with
  ``max-above-watermark`` 0 and 8: EC2 calls (all of them: describes included) per IP
  allocated. The first pays one AssignPrivateIpAddresses per pod or so; the second batches.

moto answers in about a millisecond where EC2 takes tens to hundreds, so the times are a
floor for the control plane; the call counts carry over. Writes
``benchmarks/results/eni_ipam.json``.
Run: ``.venv/bin/python benchmarks/eni_ipam.py [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pylium.adapters.ec2 import EC2API
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import Store, open_store
from pylium.agent.ipam import IPAM
from pylium.model.config import IPAMMode, OperatorSettings
from pylium.operator.eni import ENIController
from pylium.testing.moto import MotoServer, moto_server

RESULTS = Path(__file__).resolve().parent / "results" / "eni_ipam.json"
AZ = "us-east-1a"


def world(ec2: Any) -> dict[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20", AvailabilityZone=AZ)
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="m5.large",
        SubnetId=subnet["Subnet"]["SubnetId"],
    )["Instances"][0]["InstanceId"]
    return {
        "instance-id": instance,
        "instance-type": "m5.large",
        "vpc-id": vpc,
        "availability-zone": AZ,
    }


class Loop:
    def __init__(self, ctl: ENIController) -> None:
        self.ctl = ctl
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            self.ctl.reconcile()
            self.stop.wait(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def pool_size(store: Store) -> tuple[int, int]:
    cn = ResourceClient(store).get("CiliumNode", "n1")
    if cn is None:
        return 0, 0
    pool = (cn.body.get("spec") or {}).get("ipam", {}).get("pool") or {}
    used = ((cn.body.get("status") or {}).get("ipam") or {}).get("used") or {}
    return len(pool), len(used)


def wait(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def run_watermark(moto: MotoServer, tmp: Path, pre: int) -> dict[str, float]:
    moto.reset()
    ec2 = moto.client()
    metadata = world(ec2)
    store = open_store(f"local:{tmp / f'wm-{pre}-{time.monotonic_ns()}.sqlite'}")
    api = EC2API(moto.client(), qps=1000, burst=1000)
    ctl = ENIController(store, api, OperatorSettings.from_configmap({"ipam": "eni"}))
    ctl.refresh()  # the operator has been running: its cache is warm
    calls0 = api.metrics.total_calls()
    loop = Loop(ctl)
    try:
        ipam = IPAM(store, "n1", IPAMMode.ENI, pre_allocate=pre, eni=metadata)
        start = time.monotonic()
        ipam.wait_for_cidrs(threading.Event(), period=0.005)
        wait(lambda: pool_size(store)[0] >= pre)
        elapsed = time.monotonic() - start
    finally:
        loop.close()
        store.close()
    calls = api.metrics.total_calls() - calls0
    return {"seconds": elapsed, "ec2_calls": calls, "calls_per_ip": calls / pre}


def run_growth(moto: MotoServer, tmp: Path, above: int, pods: int = 24) -> dict[str, float]:
    moto.reset()
    ec2 = moto.client()
    metadata = world(ec2)
    store = open_store(f"local:{tmp / f'gr-{above}-{time.monotonic_ns()}.sqlite'}")
    api = EC2API(moto.client(), qps=1000, burst=1000)
    ctl = ENIController(store, api, OperatorSettings.from_configmap({"ipam": "eni"}))
    ctl.refresh()
    calls0 = api.metrics.total_calls()
    loop = Loop(ctl)
    try:
        ipam = IPAM(store, "n1", IPAMMode.ENI, pre_allocate=8, eni=metadata)

        def above_watermark(body: dict[str, Any] | None) -> dict[str, Any] | None:
            assert body is not None
            body["spec"]["ipam"]["max-above-watermark"] = above
            return body

        ipam.ensure_cilium_node()
        ResourceClient(store).mutate("CiliumNode", "n1", fn=above_watermark)
        ipam.wait_for_cidrs(threading.Event(), period=0.005)
        start = time.monotonic()
        for i in range(pods):
            ipam.allocate(f"default/pod-{i}")
            # The next pod comes once the operator caught up: 8 free again, or the
            # m5.large's 27 pod IPs (used: the router IP and i + 1 pods).
            target = min(8, 27 - (i + 2))
            wait(lambda target=target: pool_size(store)[0] - pool_size(store)[1] >= target)
        elapsed = time.monotonic() - start
        allocated = pool_size(store)[0]
    finally:
        loop.close()
        store.close()
    calls = api.metrics.total_calls() - calls0
    changes = sum(
        n
        for (op, code), n in api.metrics.calls.items()
        if code == "OK" and not op.startswith("describe_")
    )
    return {
        "max_above_watermark": above,
        "pods": pods,
        "ips_allocated": allocated,
        "ec2_calls": calls,
        "ec2_changes": changes,
        "calls_per_ip": calls / allocated,
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out: dict[str, Any] = {"watermark": {}, "growth": []}
    with tempfile.TemporaryDirectory() as tmpdir, moto_server(Path(tmpdir)) as moto:
        tmp = Path(tmpdir)
        for pre in (8, 16):
            runs = [run_watermark(moto, tmp, pre) for _ in range(args.rounds)]
            secs = sorted(r["seconds"] for r in runs)
            out["watermark"][str(pre)] = {
                "median_ms": round(statistics.median(secs) * 1000, 1),
                "max_ms": round(secs[-1] * 1000, 1),
                "ec2_calls": runs[-1]["ec2_calls"],
                "calls_per_ip": round(runs[-1]["calls_per_ip"], 2),
            }
            print(f"watermark pre-allocate={pre}: {out['watermark'][str(pre)]}")
        for above in (0, 8):
            result = run_growth(moto, tmp, above)
            result["calls_per_ip"] = round(result["calls_per_ip"], 2)
            result["seconds"] = round(result["seconds"], 2)
            out["growth"].append(result)
            print(f"growth: {result}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
