"""Benchmark B10: Hubble's cost and capacity.

- ``capacity``: flows per second one core turns from raw ring-buffer records into enriched
  flows (decode the record, look up both endpoints, build the Flow), which the agent does when
  flows are read; the baseline in the same run is unpacking the records alone. Target: at
  least 20,000 flows/s. Also the events per second the agent's reader takes into the ring at
  drain time (batches of 256 kept raw: its per-event work).
- ``overhead``: TCP request/response rate between two pods on two nodes with Hubble on
  (``enable-hubble: true``, the default: the agent drains events and serves flows) and off,
  interleaved by restarting the agents with the other setting; ratio on/off, target >= 0.97.

Writes ``benchmarks/results/hubble.json``. Run as root:
``.venv/bin/python benchmarks/hubble.py [--events 200000] [--rounds 3] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import struct
import time

import _lab

from pylium.adapters.maps import events
from pylium.agent.hubble import BatchContext, HubbleObserver, RecordFlows
from pylium.core.hubble.flow import Endpoint

LAB = "benchhb"
RR_PORT = 5001
BATCH = 256
"""Records per drained batch."""


def records(n: int) -> list[bytes]:
    """Ring-buffer records (the kernel's header, the event, padding) of trace events."""
    out = []
    for i in range(n):
        event = events.EVENT.struct.pack(
            time.monotonic_ns(),
            4,
            1,
            0,
            2,
            6,
            0x10,
            1,
            7,
            257,
            256,
            ipaddress.IPv4Address(f"10.0.0.{3 + i % 200}").packed,
            ipaddress.IPv4Address("10.0.1.2").packed,
            40000 + i % 20000,
            8080,
            66,
            0,
        )
        out.append((struct.pack("=II", len(event), 0) + event).ljust(events.RECORD, b"\0"))
    return out


def capacity(n: int) -> dict[str, float]:
    raw = records(n)
    pods = {
        ipaddress.IPv4Address(f"10.0.0.{3 + i}"): Endpoint(
            257, ("k8s:app=client",), i, "default", f"client-{i}"
        )
        for i in range(200)
    }
    pods[ipaddress.IPv4Address("10.0.1.2")] = Endpoint(
        256, ("k8s:app=server",), 1, "default", "server"
    )
    batches = [events.Records(b"".join(raw[i : i + BATCH])) for i in range(0, n, BATCH)]

    start = time.perf_counter()
    for r in raw:
        events.EVENT.struct.unpack_from(r, events.HEADER)
    baseline = n / (time.perf_counter() - start)

    # At drain time (the agent's per-event work): the batch into the ring, nothing decoded.
    observer = HubbleObserver(
        node="n1",
        cluster="default",
        capacity=4095,
        attribution=lambda *_: ((), ()),
        labels_of=lambda _: None,
    )
    start = time.perf_counter()
    for batch in batches:
        observer.take(batch)
    drained = n / (time.perf_counter() - start)

    # When read: each record decoded into an enriched flow (both endpoints looked up).
    context = BatchContext(
        node="n1",
        boot_offset_ns=time.time_ns() - time.monotonic_ns(),
        endpoints=pods,
        labels={},
        decided={},
    )
    start = time.perf_counter()
    for batch in batches:
        list(RecordFlows(batch, context))
    rate = n / (time.perf_counter() - start)
    return {
        "flows_per_s": rate,
        "drained_per_s": drained,
        "unpack_only_per_s": baseline,
        "ratio_to_unpack": rate / baseline,
    }


def overhead(rounds: int, seconds: float) -> dict[str, object]:
    samples: dict[str, list[float]] = {"hubble_on": [], "hubble_off": []}
    with _lab.lab(LAB, 2) as lab:
        binary = _lab.build_tcp_rr(lab.home)
        server_cmd = ["taskset", "-c", _lab.SERVER_CPU, *_lab.tcp_rr_server(binary, RR_PORT)]
        server = lab.pod("server", "n2", argv=server_cmd)
        client_ns = lab.pod("client", "n1")["netns"]
        config = lab.dir / "config.json"
        time.sleep(2)
        for _ in range(rounds):
            for name, enabled in (("hubble_on", "true"), ("hubble_off", "false")):
                config.write_text(
                    json.dumps({**json.loads(config.read_text()), "enable-hubble": enabled})
                )
                for node in ("n1", "n2"):
                    lab.run("lab", "restart", node, "--name", LAB)
                time.sleep(3)  # agents up again (the datapath never stopped)
                samples[name].append(_lab.tcp_rr(binary, client_ns, server["ip"], RR_PORT, seconds))
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "samples_tps": samples,
        "median_tps": medians,
        "ratio_on_off": medians["hubble_on"] / medians["hubble_off"],
        "ratio_interval": _lab.ratio_summary(samples["hubble_on"], samples["hubble_off"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"capacity": capacity(args.events)}
    cap = result["capacity"]
    assert isinstance(cap, dict)
    print(
        f"capacity: {cap['flows_per_s']:.0f} flows/s on one core (target >= 20,000); "
        f"unpacking alone {cap['unpack_only_per_s']:.0f}/s; "
        f"taken raw at drain time {cap['drained_per_s']:.0f} events/s"
    )
    if not args.skip_overhead:
        result["overhead"] = over = overhead(args.rounds, args.seconds)
        print(
            f"overhead: TCP_RR hubble on/off = {over['ratio_on_off']:.3f} (target >= 0.97) "
            f"{over['median_tps']}"
        )
    _lab.write_results("hubble", result)


if __name__ == "__main__":
    main()
