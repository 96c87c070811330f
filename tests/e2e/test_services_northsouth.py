"""North-south services end to end: a client outside the nodes (the lab's client namespace
on the fabric, a machine of the node network) reaches NodePort, LoadBalancer and
ExternalIPs frontends through bpf_host's per-packet path, in tunnel and in native routing,
on a two-node lab with kube-proxy replacement. The backends answer with the address they see
the client as: a backend on the node the client went to sees the client; one on the other
node sees the first node (SNAT: its router IP through the tunnel, its node IP in native
routing), or the client itself with loadBalancer.mode=dsr (native routing: the frontend
travels in an IPv4 option and the backend's node answers the client directly). With
externalTrafficPolicy=Local only the node's own backend answers, seeing the
client, and a node without one drops. No iptables or nftables rule is made for a service.
With SNAT, ``pylium bpf nat list`` shows a connection's NAT entries, and once its conntrack
entries expire the agent's conntrack GC deletes them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pylium.adapters.maps import ct
from pylium.adapters.maps.base import open_pinned

from .conftest import Cli
from .test_services import CLIENT, wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

BACKEND = """
import http.server, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name} {self.client_address[0]}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""
"""Answers ``<pod> <client address as the pod sees it>``."""

NODE_PORT = 30080
SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  externalIPs: [EXTERNAL_IP]
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]
status:
  loadBalancer:
    ingress: [{ip: LB_IP}]
"""

NATIVE = (
    "--set",
    "routingMode=native",
    "--set",
    "ipv4NativeRoutingCIDR=10.0.0.0/8",
    "--set",
    "autoDirectNodeRoutes=true",
)


def fetch(netns: str, address: str, port: int, rounds: int) -> dict[str, Any]:
    """HTTP GETs from the client namespace: {"names": [...], "errors": [...]}."""
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-c",
            CLIENT,
            address,
            str(rounds),
            str(port),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def answers(out: dict[str, Any]) -> set[tuple[str, str]]:
    """(pod, the client's address as the pod saw it) of each answer."""
    return {(n.split()[0], n.split()[1]) for n in out["names"]}


def nat_lines(cli: Cli, lab: str, node: str, client: str) -> list[str]:
    """The ``pylium bpf nat list`` lines of the client's connections on the node."""
    out = cli("bpf", "nat", "list", "--node", node, "--lab", lab).stdout
    return [line for line in out.splitlines() if f" {client}:" in line]


def expire_connections(lab: str, node: str, client: str) -> int:
    """Ends the client's connections as the node's conntrack sees them: lifetime 0, in the
    past, as once they idle out. Returns how many entries."""
    pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}/{node}")
    count = 0
    for name in (ct.TCP_NAME, ct.ANY_NAME):
        table = ct.CTMap(open_pinned(str(pins / name)), name)
        for key, entry in table.dump().items():
            if str(key.saddr) == client:
                table.upsert(key, dataclasses.replace(entry, lifetime=0))
                count += 1
    return count


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["tunnel", "native", "dsr"])
def test_northsouth(cli: Cli, tmp_path: Path, mode: str) -> None:
    lab = f"ns{mode[0]}{os.getpid() % 10000}"
    dsr = ("--set", "loadBalancer.mode=dsr")
    extra = {"tunnel": (), "native": NATIVE, "dsr": (*NATIVE, *dsr)}[mode]
    cli("lab", "up", "--nodes", "2", "--name", lab, "--set", "kubeProxyReplacement=true",
        "--set", "conntrackGCInterval=2s", *extra)  # fmt: skip
    try:
        state = cli.lab_state(lab)
        client_ns = f"pl-{lab}-cl"  # the lab's client namespace, on the underlay
        subnet = state["subnet"].rsplit(".", 1)[0]
        client = f"{subnet}.253"  # its address
        lb_ip, external_ip = f"{subnet}.200", f"{subnet}.201"
        node_ip = {n: v["address"].split("/")[0] for n, v in state["nodes"].items()}
        # As a BGP speaker or a cloud load balancer would: the LB IP via n1, the ExternalIP
        # via n2 (the client namespace goes with the lab).
        for vip, node in ((lb_ip, "n1"), (external_ip, "n2")):
            subprocess.run(
                ["ip", "-n", client_ns, "route", "add", f"{vip}/32", "via", node_ip[node]],
                check=True,
            )
        for pod, node in (("web1", "n1"), ("web2", "n2")):
            cli("lab", "pod", "run", pod, "--node", node, "--labels", "app=web", "--name", lab,
                "--", sys.executable, "-c", BACKEND, pod)  # fmt: skip
        manifest = tmp_path / "svc.yaml"
        manifest.write_text(SERVICES.replace("EXTERNAL_IP", external_ip).replace("LB_IP", lb_ip))
        cli("apply", "-f", str(manifest))

        def snat_address(node: str) -> str:
            """The client as another node's backend sees it: the node's SNAT address (the
            router IP through the tunnel), the client itself with DSR."""
            if mode == "dsr":
                return client
            if mode == "native":
                return str(node_ip[node])
            cn = json.loads(cli("get", "ciliumnode", node, "-o", "json").stdout)
            addresses = cn["spec"]["addresses"]
            return str(next(a["ip"] for a in addresses if a["type"] == "CiliumInternalIP"))

        local = {"n1": "web1", "n2": "web2"}
        other = {"n1": "web2", "n2": "web1"}
        for node in ("n1", "n2"):
            wait_for(
                f"NodePort on {node}",
                lambda n=node: bool(fetch(client_ns, node_ip[n], NODE_PORT, 1)["names"]),  # type: ignore[misc]
            )
            out = fetch(client_ns, node_ip[node], NODE_PORT, 30)
            assert not out["errors"], out
            # both backends, this node's seeing the client, the other node's this node
            assert answers(out) == {
                (local[node], client),
                (other[node], snat_address(node)),
            }, out

        if mode != "dsr":
            # n1's NAT entries for the client's connections to n2's backend: the SNAT, its
            # reverse and the reverse DNAT; the GC leaves them while conntrack has them.
            lines = nat_lines(cli, lab, "n1", client)
            snat, cl = re.escape(snat_address("n1")), re.escape(client)
            age = r"Created=\d+sec ago NeedsCT=0"
            for pattern in (
                rf"TCP OUT {cl}:\d+ -> [\d.]+:8080 XLATE_SRC {snat}:\d+ {age}",
                rf"TCP IN [\d.]+:8080 -> {snat}:\d+ XLATE_DST {cl}:\d+ {age}",
                rf"TCP OUT [\d.]+:8080 -> {cl}:\d+ service XLATE_SRC [\d.]+:{NODE_PORT} {age}",
            ):
                assert any(re.fullmatch(pattern, line) for line in lines), (pattern, lines)
            assert expire_connections(lab, "n1", client) > 0
            wait_for(
                "n1's conntrack GC to delete the expired connections' NAT entries",
                lambda: not nat_lines(cli, lab, "n1", client),
            )

        # externalTrafficPolicy=Local: the LB IP (via n1) and the ExternalIP (via n2) reach
        # only the node's own backend, which sees the client.
        out = fetch(client_ns, lb_ip, 80, 10)
        assert not out["errors"] and answers(out) == {("web1", client)}, out
        out = fetch(client_ns, external_ip, 80, 10)
        assert not out["errors"] and answers(out) == {("web2", client)}, out
        out = fetch(client_ns, node_ip["n2"], 30081, 10)
        assert not out["errors"] and answers(out) == {("web2", client)}, out

        # n2 loses its backend: its Local frontends drop (no fallback to n1's), n1's still serve
        cli("lab", "pod", "delete", "web2", "--name", lab)

        def n2_has_no_local_backend() -> bool:
            listing = cli("service", "list", "--node", "n2", "--lab", lab, "-o", "json").stdout
            wanted = (f"{external_ip}:80/TCP", f"{node_ip['n2']}:30081/TCP")
            found = [svc for svc in json.loads(listing) if svc["frontend"] in wanted]
            return len(found) == 2 and not any(svc["backends"] for svc in found)

        wait_for("n2's Local frontends without backends", n2_has_no_local_backend)
        for address, port in ((external_ip, 80), (node_ip["n2"], 30081)):
            out = fetch(client_ns, address, port, 2)
            assert out["names"] == [] and len(out["errors"]) == 2, out
        out = fetch(client_ns, lb_ip, 80, 5)
        assert not out["errors"] and answers(out) == {("web1", client)}, out
        # ETP=Cluster still reaches n1's backend through n2
        out = fetch(client_ns, node_ip["n2"], NODE_PORT, 5)
        assert not out["errors"] and answers(out) == {("web1", snat_address("n2"))}, out

        # No iptables or nftables rule for any service: only pylium's masquerade table.
        for node in ("n1", "n2"):
            netns = state["nodes"][node]["netns"]
            nft = subprocess.run(
                ["ip", "netns", "exec", netns, "nft", "list", "ruleset"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            tables = [line for line in nft.splitlines() if line.startswith("table")]
            assert tables in ([], ["table ip pylium {"]), nft
            ipt = subprocess.run(
                ["ip", "netns", "exec", netns, "iptables-save"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for text in (nft, ipt):
                for needle in (lb_ip, external_ip, str(NODE_PORT), "30081", "DNAT"):
                    assert needle not in text, (needle, text)
    finally:
        cli("lab", "down", "--name", lab, "--force", check=False)
