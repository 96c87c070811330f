"""Azure and AlibabaCloud IPAM against the protocol test servers: time for a node to reach
its pre-allocation watermark, cloud API calls per allocated IP.

The servers (:mod:`pylium.testing.azure`, :mod:`pylium.testing.alibabacloud`) run on
loopback in this process; the operator's controller for the mode reconciles a fresh
CiliumNode (warm cache: the operator has been running) on a SQLite store until its pool
holds ``pre-allocate`` addresses, for pre-allocate 8 and 14 (AlibabaCloud: an instance type of
3 ENIs of 6 addresses, so 8 needs one new ENI and 14 two; Azure: one NIC of 256). Reported: median
and max time over the rounds, and the API calls of the last round (all, and the changing
ones: AssignPrivateIpAddresses/CreateNetworkInterface/AttachNetworkInterface, or NIC/VMSS VM
PUTs) per allocated IP.

The servers answer in about a millisecond where the clouds take tens to hundreds (an Azure NIC
PUT: seconds), so the times are a floor for the control plane; the call counts carry over.
Writes ``benchmarks/results/cloud_ipam.json``.
Run: ``.venv/bin/python benchmarks/cloud_ipam.py [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pylium.adapters.alibabacloud import AlibabaCloudAPI
from pylium.adapters.azure import ARMClient
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store import open_store
from pylium.model.config import OperatorSettings
from pylium.model.resource import Resource
from pylium.operator.alibabacloud_ipam import AlibabaIPAMController
from pylium.operator.azure_ipam import AzureIPAMController
from pylium.operator.cloud_ipam import CloudIPAMController
from pylium.testing.alibabacloud import alibabacloud_server
from pylium.testing.azure import azure_server

RESULTS = Path(__file__).parent / "results" / "cloud_ipam.json"
ALI_CHANGES = ("AssignPrivateIpAddresses", "CreateNetworkInterface", "AttachNetworkInterface")


def put_node(ctl: CloudIPAMController, spec: dict[str, Any]) -> None:
    ResourceClient(ctl.client.store).put(
        Resource(
            {
                "apiVersion": "cilium.io/v2",
                "kind": "CiliumNode",
                "metadata": {"name": "n1"},
                "spec": spec,
            }
        )
    )


def pool_size(ctl: CloudIPAMController) -> int:
    found = ctl.client.get("CiliumNode", "n1")
    assert found is not None
    return len((dict(found.body).get("spec") or {}).get("ipam", {}).get("pool") or {})


def reach(ctl: CloudIPAMController, pre: int) -> float:
    start = time.monotonic()
    for _ in range(10):
        if pool_size(ctl) >= pre:
            return time.monotonic() - start
        errors = [r.error for r in ctl.reconcile().values() if r.error]
        if errors:
            raise SystemExit(f"allocation failed: {errors}")
    raise SystemExit(f"pool below {pre} after 10 passes")


def run_alibaba(tmp: Path, pre: int) -> dict[str, float]:
    with alibabacloud_server() as server:
        vsw = server.add_vswitch("vpc-1", "z", "10.1.0.0/22")
        sg = server.add_security_group("vpc-1")
        server.add_instance_type("ecs.g6.large", enis=3, ips=6)
        instance = server.run_instance("ecs.g6.large", vsw, sg)
        store = open_store(f"local:{tmp / f'ali-{pre}-{time.monotonic_ns()}.sqlite'}")
        api = AlibabaCloudAPI(
            region="cn-hangzhou",
            access_key_id=server.key_id,
            access_key_secret=server.secret,
            vpc_id="vpc-1",
            ecs_endpoint=server.url,
            vpc_endpoint=server.url,
            qps=1000,
            burst=1000,
            poll_interval=0.01,
        )
        settings = OperatorSettings.from_configmap({"ipam": "alibabacloud"})
        ctl = AlibabaIPAMController(store, api, settings)
        ctl.refresh()
        # What a warm operator has seen already.
        ctl.alibaba.limits.update(api.instance_type_limits(["ecs.g6.large"]))
        calls0 = api.metrics.total_calls()
        changes0 = sum(server.calls(a) for a in ALI_CHANGES)
        put_node(
            ctl,
            {
                "instance-id": instance,
                "alibaba-cloud": {"instance-type": "ecs.g6.large", "vpc-id": "vpc-1"},
                "ipam": {"pre-allocate": pre},
            },
        )
        elapsed = reach(ctl, pre)
        store.close()
        calls = api.metrics.total_calls() - calls0
        changes = sum(server.calls(a) for a in ALI_CHANGES) - changes0
    return {"seconds": elapsed, "calls": calls, "changes": changes, "ips": pre}


def run_azure(tmp: Path, pre: int) -> dict[str, float]:
    with azure_server(identity="id-1") as server:
        subnet = server.add_vnet("v", {"nodes": "10.2.0.0/22"})["nodes"]
        server.add_sku("Standard_D2s_v3", 2)
        vm = server.add_vm("vm1", "Standard_D2s_v3", subnet)
        store = open_store(f"local:{tmp / f'az-{pre}-{time.monotonic_ns()}.sqlite'}")
        api = ARMClient(
            subscription_id=server.subscription,
            resource_group=server.group,
            user_assigned_identity_id="id-1",
            endpoint=server.url,
            imds_endpoint=server.url,
            qps=1000,
            burst=1000,
            sleep=lambda _s: None,
        )
        settings = OperatorSettings.from_configmap({"ipam": "azure"})
        ctl = AzureIPAMController(store, api, settings)
        ctl.refresh()
        calls0 = api.metrics.total_calls()
        puts0 = server.count("PUT")
        put_node(ctl, {"instance-id": vm, "azure": {}, "ipam": {"pre-allocate": pre}})
        elapsed = reach(ctl, pre)
        store.close()
        calls = api.metrics.total_calls() - calls0
        changes = server.count("PUT") - puts0
    return {"seconds": elapsed, "calls": calls, "changes": changes, "ips": pre}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name, run in (("alibabacloud", run_alibaba), ("azure", run_azure)):
            out[name] = {}
            for pre in (8, 14):
                runs = [run(tmp, pre) for _ in range(args.rounds)]
                secs = sorted(r["seconds"] for r in runs)
                last = runs[-1]
                out[name][str(pre)] = {
                    "median_ms": round(statistics.median(secs) * 1000, 1),
                    "max_ms": round(secs[-1] * 1000, 1),
                    "api_calls": last["calls"],
                    "calls_per_ip": round(last["calls"] / last["ips"], 2),
                    "changes_per_ip": round(last["changes"] / last["ips"], 3),
                }
                print(f"{name} pre-allocate={pre}: {out[name][str(pre)]}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
