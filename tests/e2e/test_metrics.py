"""Metrics in a lab: with ``prometheus.enabled`` and ``hubble.metrics.enabled`` each agent serves
``cilium_*`` on its node's :9962 and ``hubble_*`` on :9965 (every node is its own network
namespace, so each binds the same ports), the operator ``cilium_operator_*`` on :9963 in the
fabric; scraped from inside those namespaces, the counters move with allowed and denied
traffic; ``pylium metrics list`` shows the agent's through its API."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import DENY_SERVER_INGRESS, FETCH, HTTP_SERVER, Cli, LabHandle, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCRAPE = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
)
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$")


def scrape(netns: str, url: str) -> dict[str, float]:
    """``name{labels}`` -> value, fetched from inside ``netns`` (the lab's own namespace)."""
    text = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", SCRAPE, url],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def total(samples: dict[str, float], prefix: str, *needles: str) -> float:
    return sum(
        v for k, v in samples.items() if k.startswith(prefix) and all(n in k for n in needles)
    )


def test_agent_hubble_and_operator_metrics_move(cli: Cli, lab: LabHandle, tmp_path: Path) -> None:
    lab.up(
        "--nodes",
        "2",
        "--set",
        "prometheus.enabled=true",
        "--set",
        "hubble.metrics.enabled={drop,flow,policy:destinationContext=pod}",
    )
    n2 = lab.nodes["n2"]
    n2_ip = n2["ip"]
    server_ip = lab.run_pod("server", "n2", *HTTP_SERVER, labels="app=server")
    lab.run_pod("client", "n1", labels="app=client")

    def fetch(timeout: float = 3.0) -> str:
        return lab.exec("client", sys.executable, "-c", FETCH, server_ip, str(timeout)).strip()

    wait_for("the server to answer", lambda: fetch() == "200")
    agent_url = f"http://{n2_ip}:9962/metrics"
    hubble_url = f"http://{n2_ip}:9965/metrics"
    before = scrape(n2["netns"], agent_url)
    assert total(before, "cilium_forward_count_total", 'direction="INGRESS"') > 0
    assert before["cilium_endpoint"] >= 1
    assert total(before, "cilium_identity", 'type="reserved"') > 0
    assert total(before, "cilium_ip_addresses", 'family="ipv4"') >= 2
    assert total(before, "cilium_bpf_map_pressure", "pylium_ipcache") > 0
    hubble_before = scrape(n2["netns"], hubble_url)
    assert total(hubble_before, "hubble_flows_processed_total", 'verdict="FORWARDED"') > 0
    assert total(
        hubble_before,
        "hubble_policy_verdicts_total",
        'action="forwarded"',
        'port="8080"',
        'destination="default/server"',
    ) == 0  # no policy selects the server yet: nothing to tell  # fmt: skip

    (tmp_path / "deny.yaml").write_text(DENY_SERVER_INGRESS)
    cli("apply", "-f", str(tmp_path / "deny.yaml"))
    time.sleep(0.5)
    assert fetch(1.5) != "200"
    denied = ('reason="Policy denied"', 'direction="INGRESS"')
    deadline = time.monotonic() + 10
    while True:
        after = scrape(n2["netns"], agent_url)
        hubble_after = scrape(n2["netns"], hubble_url)
        moved = (
            total(after, "cilium_drop_count_total", *denied)
            > total(before, "cilium_drop_count_total", *denied)
            and total(hubble_after, "hubble_drop_total", 'reason="POLICY_DENIED"') > 0
        )
        if moved or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert total(after, "cilium_drop_count_total", *denied) > total(
        before, "cilium_drop_count_total", *denied
    )
    assert total(after, "cilium_drop_bytes_total", *denied) > 0
    assert after["cilium_policy"] == 1
    assert total(hubble_after, "hubble_drop_total", 'reason="POLICY_DENIED"', "TCP") > 0
    assert (
        total(
            hubble_after,
            "hubble_policy_verdicts_total",
            'action="dropped"',
            'direction="ingress"',
            'port="8080"',
            'destination="default/server"',
        )
        > 0
    )

    assert hubble_after['hubble_lost_events_total{source="perf_event_ring_buffer"}'] >= 0
    # cilium-dbg metrics list's shape, through the agent API.
    listed = cli("metrics", "list", "--node", "n2", "--lab", lab.name, "-p", "^cilium_drop_count")
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["Metric", "Labels", "Value"]
    assert any(
        "direction=INGRESS reason=Policy denied" in line and line.startswith("cilium_drop")
        for line in lines
    ), listed.stdout
    assert all(line.startswith("cilium_drop_count_total") for line in lines[1:])
    operator = scrape(f"pl-{lab.name}-fab", "http://127.0.0.1:9963/metrics")
    assert operator["cilium_operator_is_leader"] == 1
    assert operator['cilium_operator_ipam_nodes{category="total"}'] == 2
    assert operator['cilium_operator_ipam_ips{type="used"}'] >= 4  # 2 routers, 2 pods
