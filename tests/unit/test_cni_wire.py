"""The CNI wire protocol core: requests parsed from env + stdin, results and errors rendered."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pylium.core.cni import (
    AddResult,
    CniError,
    Command,
    ErrorCode,
    Interface,
    IPConfig,
    Route,
    endpoint_result,
    parse_request,
    prev_result_addresses,
    render_result,
    render_version,
)

CONF = {"cniVersion": "1.0.0", "name": "cilium", "type": "cilium-cni"}
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/run/netns/pod1",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=client",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}


def test_add_request_is_parsed() -> None:
    conf = dict(CONF, runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    req = parse_request(ENV, json.dumps(conf).encode())
    assert req.command is Command.ADD
    assert (req.container_id, req.netns, req.ifname) == ("abc123", "/run/netns/pod1", "eth0")
    assert (req.pod_namespace, req.pod_name) == ("default", "client")
    assert req.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert req.port_mappings[0].host_port == 8080
    assert req.port_mappings[0].protocol == "tcp"


@pytest.mark.parametrize(
    ("env", "stdin", "code", "text"),
    [
        ({**ENV, "CNI_COMMAND": "FROB"}, json.dumps(CONF), ErrorCode.INVALID_ENVIRONMENT, "FROB"),
        ({k: v for k, v in ENV.items() if k != "CNI_NETNS"}, json.dumps(CONF), 4, "CNI_NETNS"),
        (ENV, "{not json", ErrorCode.DECODE_FAILURE, "decode"),
        (ENV, json.dumps({**CONF, "cniVersion": "9.9.9"}), 1, "9.9.9"),
        ({**ENV, "CNI_ARGS": "K8S_POD_NAME"}, json.dumps(CONF), 4, "CNI_ARGS"),
        (
            ENV,
            json.dumps(
                {**CONF, "runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}}
            ),
            ErrorCode.INVALID_NETWORK_CONFIG,
            "portMappings[0]",
        ),
    ],
)
def test_bad_requests_get_spec_error_codes(
    env: dict[str, str], stdin: str, code: int, text: str
) -> None:
    with pytest.raises(CniError) as err:
        parse_request(env, stdin.encode())
    assert err.value.code == code
    assert text in str(err.value)


def test_del_without_netns_is_accepted() -> None:
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"} | {"CNI_COMMAND": "DEL"}
    req = parse_request(env, json.dumps(CONF).encode())
    assert req.command is Command.DEL and req.netns == ""


RESULT = AddResult(
    interfaces=(
        Interface(name="lxc1234", mac="aa:bb:cc:dd:ee:01"),
        Interface(name="eth0", mac="aa:bb:cc:dd:ee:02", sandbox="/run/netns/pod1"),
    ),
    ips=(
        IPConfig(
            address=ipaddress.IPv4Interface("10.0.1.7/32"),
            gateway=ipaddress.IPv4Address("10.0.1.1"),
            interface=1,
        ),
    ),
    routes=(Route(dst=ipaddress.IPv4Network("0.0.0.0/0"), gw=ipaddress.IPv4Address("10.0.1.1")),),
)


def test_result_shapes_per_version() -> None:
    v1 = render_result(RESULT, "1.0.0")
    assert v1["ips"] == [{"address": "10.0.1.7/32", "gateway": "10.0.1.1", "interface": 1}]
    assert v1["interfaces"][1] == {
        "name": "eth0",
        "mac": "aa:bb:cc:dd:ee:02",
        "sandbox": "/run/netns/pod1",
    }
    assert v1["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}]
    v031 = render_result(RESULT, "0.3.1")
    assert v031["ips"][0]["version"] == "4"
    legacy = render_result(RESULT, "0.2.0")
    assert legacy["ip4"] == {
        "ip": "10.0.1.7/32",
        "gateway": "10.0.1.1",
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}],
    }
    assert "ips" not in legacy


def test_version_lists_supported_versions() -> None:
    out = render_version("1.1.0")
    assert out["cniVersion"] == "1.1.0"
    assert "0.3.1" in out["supportedVersions"] and "1.1.0" in out["supportedVersions"]


def _plugin(env: dict[str, str], stdin: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("pylium-cni"))
    return subprocess.run([exe], env=env, input=stdin, capture_output=True, text=True, timeout=30)


def test_plugin_binary_speaks_the_wire_protocol() -> None:
    version = _plugin({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": "0.4.0"}))
    assert version.returncode == 0
    assert json.loads(version.stdout)["cniVersion"] == "0.4.0"

    bad = _plugin({**ENV, "CNI_COMMAND": "ADD"}, json.dumps({**CONF, "cniVersion": "0.0.7"}))
    assert bad.returncode == 1
    err = json.loads(bad.stdout)
    assert err["code"] == 1 and "0.0.7" in err["details"]


def test_endpoint_result_is_what_chained_plugins_expect() -> None:
    """portmap forwards only to IPs whose ``interface`` index names a sandbox interface called
    CNI_IFNAME; bandwidth looks for the host-side veth (no sandbox) by name."""
    result = endpoint_result(
        host_ifname="lxc0123456789a",
        host_mac="aa:bb:cc:dd:ee:01",
        ifname="eth0",
        pod_mac="aa:bb:cc:dd:ee:02",
        netns="/run/netns/pod1",
        address=ipaddress.IPv4Address("10.0.1.7"),
        router=ipaddress.IPv4Address("10.0.1.1"),
    )
    out = render_result(result, "1.0.0")
    assert out == {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "lxc0123456789a", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "sandbox": "/run/netns/pod1"},
        ],
        "ips": [{"address": "10.0.1.7/32", "gateway": "10.0.1.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.1.1"}],
        "dns": {},
    }
    pod_iface = out["interfaces"][out["ips"][0]["interface"]]
    assert pod_iface["name"] == "eth0" and pod_iface["sandbox"]
    assert next(i for i in out["interfaces"] if not i.get("sandbox"))["name"].startswith("lxc")
    # The same result read back as a chained plugin's (or CHECK's) prevResult.
    assert prev_result_addresses(out, "eth0") == ("10.0.1.7",)
    assert prev_result_addresses(out, "net1") == ()
    assert prev_result_addresses(render_result(result, "0.3.1"), "eth0") == ("10.0.1.7",)
    assert prev_result_addresses(render_result(result, "0.2.0"), "eth0") == ("10.0.1.7",)
    assert prev_result_addresses(None, "eth0") == ()


def test_prev_result_with_chain_and_bad_shapes() -> None:
    # A result a bridge plugin would pass on: the IP belongs to interface 2 (the sandbox one).
    bridge = {
        "interfaces": [
            {"name": "br0"},
            {"name": "veth1"},
            {"name": "eth0", "sandbox": "/run/netns/x"},
        ],
        "ips": [{"interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}],
    }
    assert prev_result_addresses(bridge, "eth0") == ("10.99.0.2",)
    assert prev_result_addresses({"ips": [{"address": "10.1.0.5/32"}]}, "eth0") == ("10.1.0.5",)
    for bad in ({"ips": [{"interface": 5, "address": "10.0.0.1/32"}]}, {"ips": [{"x": 1}]}):
        with pytest.raises(CniError) as err:
            prev_result_addresses(bad, "eth0")
        assert err.value.code == ErrorCode.DECODE_FAILURE


def test_add_with_a_prev_result_is_refused_before_any_agent_call() -> None:
    """pylium-cni is first in its chain; behind another plugin it says so (no agent needed)."""
    conf = {**CONF, "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/32"}]}}
    env = {**ENV, "CNI_NETNS": "/nonexistent"}
    done = _plugin(env, json.dumps({**conf, "socket-path": "/nonexistent/agent.sock"}))
    assert done.returncode == 1
    err = json.loads(done.stdout)
    assert err["code"] == ErrorCode.INVALID_NETWORK_CONFIG
    assert "first plugin" in err["msg"]
