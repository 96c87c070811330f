"""Pods in a lab: pylium-cni plumbs them through the CNI wire protocol, the agent creates
endpoints (IP, identity, BPF maps, bpf_lxc on the host veth), and two pods on one node talk
through the eBPF datapath; the datapath keeps forwarding while the agent is killed, and the
endpoint comes back after the restart; DEL cleans up."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylium.adapters import fsmount, procs
from pylium.adapters.agentapi import AgentAPIError, AgentClient
from pylium.adapters.maps import endpoints as epmap
from pylium.adapters.maps import ipcache, metrics
from pylium.adapters.maps.base import open_pinned
from pylium.base.errors import PyliumError

from .conftest import Cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(); s.settimeout(20)
for _ in range(int(sys.argv[1])):
    c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 8080), timeout=10)
c.sendall(b"ping"); print(c.recv(100).decode())
"""


def in_netns(netns: str, code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def exchange(server_ns: str, client_ns: str, server_ip: str, rounds: int = 1) -> list[str]:
    server = in_netns(server_ns, SERVER, str(rounds))
    try:
        time.sleep(0.3)
        answers = []
        for _ in range(rounds):
            client = in_netns(client_ns, CLIENT, server_ip)
            out, err = client.communicate(timeout=30)
            assert client.returncode == 0, err
            answers.append(out.strip())
        server.communicate(timeout=30)
        return answers
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_pods_on_one_node_talk_through_bpf(cli: Cli) -> None:
    lab = f"p{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "1", "--name", lab)
    try:
        cli("lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client", "--name", lab)
        cli("lab", "pod", "run", "server", "--node", "n1", "--labels", "app=server", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        client, server = state["pods"]["default/client"], state["pods"]["default/server"]

        assert exchange(server["netns"], client["netns"], server["ip"]) == ["PING"]
        pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}/n1")
        forwarded = metrics.MetricsMap(open_pinned(str(pins / metrics.NAME))).totals()[(0, 2)]
        assert forwarded.count >= 4  # SYN, ACK, data, FIN... each way went through bpf_lxc

        ceps = {
            c["metadata"]["name"]: c
            for c in json.loads(cli("get", "cep", "-o", "json").stdout)["items"]
        }
        assert ceps["client"]["status"]["networking"]["addressing"][0]["ipv4"] == client["ip"]
        assert (
            ceps["client"]["status"]["identity"]["id"] != ceps["server"]["status"]["identity"]["id"]
        )
        assert "k8s:app=server" in ceps["server"]["status"]["identity"]["labels"]
        pod = json.loads(cli("get", "pod", "server", "-o", "json").stdout)
        assert pod["status"]["podIP"] == server["ip"]

        # The agent dies: programs and pinned maps keep forwarding; after the restart the
        # endpoints are restored, not duplicated.
        os.kill(state["pids"]["agent-n1"], 9)
        assert exchange(server["netns"], client["netns"], server["ip"]) == ["PING"]
        cli("lab", "restart", "n1", "--name", lab)
        sock = cli.home / "labs" / lab / "n1" / "pylium.sock"
        agent = AgentClient(sock, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                if agent.get("/v1/healthz")["datapath"]["state"] == "Ok":
                    break
            except PyliumError:
                pass
            assert time.monotonic() < deadline, "agent did not come back"
            time.sleep(0.2)
        assert len(agent.get("/v1/endpoint")) == 2
        assert exchange(server["netns"], client["netns"], server["ip"]) == ["PING"]

        cli("lab", "pod", "delete", "server", "--name", lab)
        assert len(agent.get("/v1/endpoint")) == 1
        assert cli("get", "cep", "server", check=False).returncode == 1
        with pytest.raises(AgentAPIError) as released:
            agent.get(f"/v1/ipam/{server['ip']}")
        assert released.value.status == 404
    finally:
        cli("lab", "down", "--name", lab, check=False)
    assert not Path(f"/sys/fs/bpf/pylium-lab-{lab}").exists()
    assert not any(
        ns.startswith(f"pl-{lab}-")
        for ns in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout.split()
    )


NATIVE = (
    "--set",
    "routingMode=native",
    "--set",
    "ipv4NativeRoutingCIDR=10.0.0.0/8",
    "--set",
    "autoDirectNodeRoutes=true",
)
ROUTED = NATIVE[:4]  # native routing, and the lab's router knows the pod CIDRs

PROBE_SERVER = """
import hashlib, socket, sys, threading
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 8081))
udp.settimeout(30)
def echo():
    for _ in range(int(sys.argv[1])):
        data, peer = udp.recvfrom(65535); udp.sendto(data, peer)
threading.Thread(target=echo, daemon=True).start()
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 8082)); tcp.listen(); tcp.settimeout(30)
c, _ = tcp.accept(); digest = hashlib.sha256()
while chunk := c.recv(1 << 16):
    digest.update(chunk)
c.sendall(digest.hexdigest().encode()); c.close()
"""
PROBE_CLIENT = """
import hashlib, json, os, socket, sys, time
ip, mtu = sys.argv[1], int(sys.argv[2])
out = {}
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.settimeout(2)
udp.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: never fragment
udp.connect((ip, 8081))
for size in (64, mtu - 28):  # 20 bytes of IP and 8 of UDP header: a full-MTU packet
    payload = os.urandom(size)
    for _ in range(10):
        udp.send(payload)
        try:
            out[str(size)] = udp.recv(65535) == payload; break
        except TimeoutError:
            continue
try:
    udp.send(os.urandom(mtu - 27)); out["oversize"] = "sent"
except OSError as err:
    out["oversize"] = err.errno
blob = os.urandom(8 << 20)
tcp = socket.create_connection((ip, 8082), timeout=10)
tcp.sendall(blob); tcp.shutdown(socket.SHUT_WR)
out["bulk"] = tcp.recv(100).decode() == hashlib.sha256(blob).hexdigest()
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    ("mode", "store", "mtu"),
    [
        ("tunnel", "local", 1500),
        pytest.param("tunnel", "etcd", 9000, marks=pytest.mark.etcd),  # jumbo frames
        ("native", "local", 1500),
        pytest.param("native", "etcd", 1500, marks=pytest.mark.etcd),
        ("router", "local", 1500),
    ],
)
def test_pods_on_two_nodes_talk(cli: Cli, mode: str, store: str, mtu: int) -> None:
    """ICMP, UDP (full-MTU datagrams that must not fragment), TCP (a short exchange and an
    8 MiB transfer) between pods on two nodes, in each routing mode and with jumbo frames."""
    lab = f"{mode[0]}{store[0]}{os.getpid() % 10000}"
    extra = {"tunnel": (), "native": NATIVE, "router": ROUTED}[mode]
    topology = ("--topology", "router") if mode == "router" else ()
    cli(
        "lab",
        "up",
        "--nodes",
        "2",
        "--store",
        store,
        "--name",
        lab,
        "--mtu",
        str(mtu),
        *topology,
        *extra,
    )
    try:
        cli("lab", "pod", "run", "client", "--node", "n1", "--labels", "app=client", "--name", lab)
        cli("lab", "pod", "run", "server", "--node", "n2", "--labels", "app=server", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        client, server = state["pods"]["default/client"], state["pods"]["default/server"]
        # The tunnel costs 50 bytes of the underlay's MTU; native routing costs nothing.
        pod_mtu = mtu - 50 if mode == "tunnel" else mtu
        link = subprocess.run(
            ["ip", "-n", client["netns"], "-o", "link", "show", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f" mtu {pod_mtu} " in link

        # n1 learns where the server lives (its node is the tunnel endpoint) from the store.
        server_node_ip = state["nodes"]["n2"]["address"].split("/")[0]
        pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}")
        n1_ipcache = ipcache.IPCacheMap(open_pinned(str(pins / "n1" / ipcache.NAME)))
        prefix = ipaddress.IPv4Network(f"{server['ip']}/32")
        deadline = time.monotonic() + 20
        while (entry := n1_ipcache.get(prefix)) is None:
            assert time.monotonic() < deadline, "n1 never learned the server's endpoint"
            time.sleep(0.2)
        routes = subprocess.run(
            ["ip", "-n", f"pl-{lab}-n1", "route"], capture_output=True, text=True, check=True
        ).stdout
        if mode == "tunnel":
            assert str(entry.tunnel_endpoint) == server_node_ip
        else:
            assert entry.tunnel_endpoint is None
        if mode == "native":  # the kernel routes: n2's pod CIDR via n2 (auto-direct-node-routes)
            assert f"via {server_node_ip} dev eth0" in routes
        if mode == "router":  # n1 knows only its default route; the lab's router does the rest
            assert server_node_ip not in routes and "default via" in routes
            fabric_routes = subprocess.run(
                ["ip", "-n", f"pl-{lab}-fab", "route"], capture_output=True, text=True, check=True
            ).stdout
            assert f"via {server_node_ip} dev br0" in fabric_routes
        server_identity = json.loads(cli("get", "cep", "server", "-o", "json").stdout)["status"][
            "identity"
        ]["id"]
        assert entry.identity == server_identity

        assert exchange(server["netns"], client["netns"], server["ip"], rounds=3) == ["PING"] * 3
        ping = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                client["netns"],
                "busybox",
                "ping",
                "-c",
                "2",
                "-W",
                "5",
                server["ip"],
            ],
            capture_output=True,
            text=True,
        )
        assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout + ping.stderr
        probe = in_netns(server["netns"], PROBE_SERVER, "40")
        try:
            time.sleep(0.3)
            out, err = in_netns(
                client["netns"], PROBE_CLIENT, server["ip"], str(pod_mtu)
            ).communicate(timeout=60)
        finally:
            probe.kill()
            probe.communicate()
        assert json.loads(out) == {
            "64": True,
            str(pod_mtu - 28): True,
            "oversize": 90,  # EMSGSIZE: the promised MTU is the real one
            "bulk": True,
        }, err
        # Both directions left through bpf_lxc on each node and came in through bpf_overlay
        # (tunnel) or the pod veth's to-container program (native).
        for node in ("n1", "n2"):
            totals = metrics.MetricsMap(open_pinned(str(pins / node / metrics.NAME))).totals()
            assert totals[(0, 2)].count > 0
            assert totals[(0, 1)].count > 0
    finally:
        cli("lab", "down", "--name", lab, check=False)


def test_pod_run_exec_logs_delete(cli: Cli) -> None:
    lab = f"r{os.getpid() % 10000}"
    cgroup_root = cli.home / "labs" / lab / "cgroupv2"
    cli("lab", "up", "--nodes", "1", "--name", lab)
    try:
        cli(
            "lab",
            "pod",
            "run",
            "web",
            "--node",
            "n1",
            "--labels",
            "app=web",
            "--name",
            lab,
            "--",
            sys.executable,
            "-m",
            "http.server",
            "8080",
        )
        cli("lab", "pod", "run", "shell", "--node", "n1", "--name", lab)
        endpoints = cli("endpoint", "list", "--node", "n1", "--lab", lab).stdout
        assert "k8s:app=web" in endpoints and endpoints.count("ready") == 2
        web_ip = json.loads((cli.home / "labs" / lab / "lab.json").read_text())["pods"][
            "default/web"
        ]["ip"]
        fetch = (
            "import time, urllib.request\n"
            "for _ in range(50):\n"
            "    try:\n"
            f"        answer = urllib.request.urlopen('http://{web_ip}:8080/', timeout=2)\n"
            "        print(answer.status); break\n"
            "    except OSError: time.sleep(0.2)\n"
        )
        out = cli("lab", "pod", "exec", "shell", "--name", lab, "--", sys.executable, "-c", fetch)
        assert out.stdout.strip() == "200"
        assert (
            cli("lab", "pod", "exec", "shell", "--name", lab, "--", "false", check=False).returncode
            == 1
        )
        assert '"GET / HTTP/1.1" 200' in cli("lab", "pod", "logs", "web", "--name", lab).stdout
        # The pod's process runs in its own cgroup in its node's subtree of the lab's cgroup v2
        # mount, which the agent mounted (cgroup.autoMount).
        web = json.loads((cli.home / "labs" / lab / "lab.json").read_text())["pods"]["default/web"]
        assert fsmount.is_mounted(cgroup_root, fsmount.CGROUP2)
        pod_cgroup = cgroup_root / f"pylium-lab-{lab}" / "n1" / web["container_id"][:12]
        assert (pod_cgroup / "cgroup.procs").read_text().split() == [web["pid"]]
        cli("lab", "pod", "delete", "web", "--name", lab)
        assert "default/web" not in cli("lab", "pod", "list", "--name", lab).stdout
        assert not procs.alive(int(web["pid"])) and not pod_cgroup.exists()
    finally:
        cli("lab", "down", "--name", lab, check=False)
    assert not fsmount.is_mounted(cgroup_root, fsmount.CGROUP2)


def test_pod_churn_leaves_nothing_behind(cli: Cli) -> None:
    lab = f"c{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "1", "--name", lab)
    try:
        names = [f"p{i}" for i in range(8)]
        for name in names:
            cli("lab", "pod", "run", name, "--node", "n1", "--name", lab)
        agent = AgentClient(cli.home / "labs" / lab / "n1" / "pylium.sock", timeout=10)
        assert len(agent.get("/v1/endpoint")) == len(names)
        for name in names:
            cli("lab", "pod", "delete", name, "--name", lab)
        assert agent.get("/v1/endpoint") == []
        assert agent.get("/v1/ipam")["used"] == 1  # only the router IP
        links = subprocess.run(
            ["ip", "-n", f"pl-{lab}-n1", "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        assert ": lxc" not in links
        assert json.loads(cli("get", "cep", "-A", "-o", "json").stdout)["items"] == []
        pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}/n1")

        leftover = list(epmap.EndpointsMap(open_pinned(str(pins / epmap.NAME))).raw.iter_keys())
        assert leftover == []
    finally:
        cli("lab", "down", "--name", lab, check=False)


PEER_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 9090)); s.listen(); s.settimeout(20)
c, peer = s.accept(); print(peer[0]); c.close()
"""


@pytest.mark.parametrize("mode", ["tunnel", "native"])
def test_traffic_leaving_the_cluster_is_masqueraded(cli: Cli, mode: str) -> None:
    lab = f"m{mode[0]}{os.getpid() % 10000}"
    cli("lab", "up", "--nodes", "1", "--name", lab, *(NATIVE if mode == "native" else ()))
    try:
        cli("lab", "pod", "run", "client", "--node", "n1", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        outside = str(ipaddress.IPv4Network(state["subnet"])[1])  # the fabric's own address
        node_ip = state["nodes"]["n1"]["address"].split("/")[0]
        server = in_netns(f"pl-{lab}-fab", PEER_SERVER, outside)
        try:
            time.sleep(0.3)
            connect = f"import socket; socket.create_connection(('{outside}', 9090), timeout=10)"
            cli("lab", "pod", "exec", "client", "--name", lab, "--", sys.executable, "-c", connect)
            seen, _ = server.communicate(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
        assert seen.strip() == node_ip  # the pod's address never leaves the node
    finally:
        cli("lab", "down", "--name", lab, check=False)


def nsenter(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}"]


STREAM_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8083)); s.listen(); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60)
while data := c.recv(100):
    c.sendall(data.upper())
"""
STREAM_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 8083), timeout=10)
for line in sys.stdin:  # one round trip per line, on the same connection
    c.sendall(line.strip().encode()); print(c.recv(100).decode(), flush=True)
"""


@pytest.mark.parametrize(
    ("mode", "store"),
    [pytest.param("tunnel", "etcd", marks=pytest.mark.etcd), ("native", "local")],
)
def test_connection_survives_agent_kill(cli: Cli, mode: str, store: str) -> None:
    """One TCP connection between pods on two nodes keeps working while both agents are
    killed (-9) and after they restart; the restarted agents restore, not duplicate."""
    lab = f"k{mode[0]}{os.getpid() % 10000}"
    cli(
        "lab",
        "up",
        "--nodes",
        "2",
        "--store",
        store,
        "--name",
        lab,
        *(NATIVE if mode == "native" else ()),
    )
    try:
        cli("lab", "pod", "run", "client", "--node", "n1", "--name", lab)
        cli("lab", "pod", "run", "server", "--node", "n2", "--name", lab)
        state = json.loads((cli.home / "labs" / lab / "lab.json").read_text())
        client, server = state["pods"]["default/client"], state["pods"]["default/server"]
        pins = Path(f"/sys/fs/bpf/pylium-lab-{lab}")
        n1_ipcache = ipcache.IPCacheMap(open_pinned(str(pins / "n1" / ipcache.NAME)))
        deadline = time.monotonic() + 20
        while n1_ipcache.get(ipaddress.IPv4Network(f"{server['ip']}/32")) is None:
            assert time.monotonic() < deadline, "n1 never learned the server's endpoint"
            time.sleep(0.2)
        server_proc = in_netns(server["netns"], STREAM_SERVER)
        time.sleep(0.3)
        talker = subprocess.Popen(
            [*nsenter(client["netns"]), sys.executable, "-c", STREAM_CLIENT, server["ip"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert talker.stdin is not None and talker.stdout is not None

        def round_trip(word: str) -> str:
            assert talker.stdin is not None and talker.stdout is not None
            talker.stdin.write(word + "\n")
            talker.stdin.flush()
            return talker.stdout.readline().strip()

        try:
            assert round_trip("before") == "BEFORE"
            for node in ("n1", "n2"):
                os.kill(state["pids"][f"agent-{node}"], 9)
            time.sleep(0.5)
            assert round_trip("during") == "DURING"
            for node in ("n1", "n2"):
                cli("lab", "restart", node, "--name", lab)
            for node in ("n1", "n2"):
                agent = AgentClient(cli.home / "labs" / lab / node / "pylium.sock", timeout=10)
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if agent.get("/v1/healthz")["datapath"]["state"] == "Ok":
                            break
                    except PyliumError:
                        pass
                    assert time.monotonic() < deadline, f"agent on {node} did not come back"
                    time.sleep(0.2)
                assert len(agent.get("/v1/endpoint")) == 1
                assert agent.get("/v1/ipam")["used"] == 2  # the router and the one pod
            assert round_trip("after") == "AFTER"
        finally:
            talker.stdin.close()
            talker.wait(timeout=30)
            talker.stdout.close()
            server_proc.kill()
            server_proc.communicate()
        assert len(json.loads(cli("get", "cep", "-A", "-o", "json").stdout)["items"]) == 2
    finally:
        cli("lab", "down", "--name", lab, check=False)
