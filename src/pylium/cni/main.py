"""L5: ``pylium-cni``, the plugin a container runtime executes (CNI wire protocol).

ADD: a pod IP from the node's agent (``POST /v1/ipam``), the pod's veth plumbed as Cilium does
(host side ``lxc<hash>``), then the endpoint created (``PUT /v1/endpoint/{container-id}``), and
the CNI result printed; anything that fails is undone (IP released, veth removed).
DEL: the endpoint deleted (the agent releases its IP) and the veth removed; idempotent.
CHECK: the endpoint exists and holds the IP the cached result (``prevResult``) names.
STATUS: the agent answers. VERSION: the list.
The agent's socket comes from the network configuration's ``socket-path``
(default ``/var/run/cilium/cilium.sock``).

Chaining: pylium-cni is the first plugin of its conflist; reference plugins after it
(``portmap``, ``bandwidth``) get its result as ``prevResult`` (see
:func:`pylium.core.cni.endpoint_result` for the shape they need). Run after another plugin
(an ADD with a prevResult), it refuses: Cilium's generic-veth chaining is not implemented.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import sys
from typing import Any

from pylium.adapters.agentapi import AgentAPIError, AgentClient
from pylium.adapters.netlink import podnet
from pylium.base.errors import AgentUnavailable, PyliumError
from pylium.core.cni import (
    SUPPORTED_VERSIONS,
    CniError,
    CniRequest,
    Command,
    ErrorCode,
    endpoint_result,
    parse_request,
    prev_result_addresses,
    render_result,
    render_version,
)

DEFAULT_SOCKET = "/var/run/cilium/cilium.sock"
AGENT_ERROR = 100  # plugin-specific: the agent refused the request


def host_ifname(container_id: str, ifname: str) -> str:
    """``lxc`` + 11 hex digits of the container ID and interface (15 characters at most)."""
    return "lxc" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:11]


def _owner(request: CniRequest) -> str:
    return f"{request.pod_namespace or 'default'}/{request.pod_name or request.container_id[:12]}"


def add(client: AgentClient, request: CniRequest) -> dict[str, Any]:
    if request.prev_result:
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            "pylium-cni must be the first plugin of its conflist",
            "it got a prevResult: chaining behind another plugin (cni-chaining-mode "
            "generic-veth, aws-cni, ...) is not implemented",
        )
    answer = client.post("/v1/ipam", owner=_owner(request))
    ip = ipaddress.IPv4Address(answer["address"]["ipv4"])
    router = ipaddress.IPv4Address(answer["ipv4"]["gateway"])
    host = host_ifname(request.container_id, request.ifname)
    try:
        link = podnet.setup_pod_interface(
            netns_path=request.netns,
            ifname=request.ifname,
            host_ifname=host,
            address=ip,
            router=router,
            mtu=int(answer.get("mtu") or 1500),
        )
        client.request(
            "PUT",
            f"/v1/endpoint/{request.container_id}",
            body={
                "container-id": request.container_id,
                "container-interface-name": request.ifname,
                "container-netns-path": request.netns,
                "interface-name": host,
                "interface-index": link.host_ifindex,
                "mac": link.pod_mac,
                "host-mac": link.host_mac,
                "addressing": {"ipv4": str(ip)},
                "k8s-namespace": request.pod_namespace or "default",
                "k8s-pod-name": request.pod_name or request.container_id[:12],
                "labels": dict(request.config.get("labels") or {}),
                "port-mappings": [m.to_wire() for m in request.port_mappings],
            },
        )
    except BaseException:
        podnet.delete_host_link(host)
        with contextlib.suppress(PyliumError):
            client.delete(f"/v1/ipam/{ip}")
        raise
    result = endpoint_result(
        host_ifname=host,
        host_mac=link.host_mac,
        ifname=request.ifname,
        pod_mac=link.pod_mac,
        netns=request.netns,
        address=ip,
        router=router,
    )
    return render_result(result, request.cni_version)


def check(client: AgentClient, request: CniRequest) -> None:
    """The endpoint exists, and holds the address the cached ADD result gave the pod."""
    endpoint = client.get(f"/v1/endpoint/{request.container_id}")
    expected = prev_result_addresses(request.prev_result, request.ifname)
    held = str(endpoint.get("ipv4", ""))
    if expected and held not in expected:
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            "endpoint does not match prevResult",
            f"endpoint {request.container_id} holds {held or 'no IPv4'}, "
            f"prevResult says {', '.join(expected)}",
        )


def run(env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    """(exit code, JSON object to print or None) for one invocation."""
    version = SUPPORTED_VERSIONS[-1]
    try:
        request = parse_request(env, stdin)
        version = request.cni_version
        if request.command is Command.VERSION:
            return 0, render_version(version)
        client = AgentClient(str(request.config.get("socket-path") or DEFAULT_SOCKET))
        if request.command is Command.ADD:
            return 0, add(client, request)
        if request.command is Command.DEL:
            client.delete(f"/v1/endpoint/{request.container_id}")
            podnet.delete_host_link(host_ifname(request.container_id, request.ifname))
            return 0, None
        if request.command is Command.CHECK:
            check(client, request)
            return 0, None
        if request.command is Command.STATUS:
            client.get("/v1/healthz")
            return 0, None
        return 0, None  # GC: the agent removes endpoints whose veth is gone on restart
    except AgentUnavailable as err:
        return 1, CniError(ErrorCode.TRY_AGAIN_LATER, "pylium-agent unreachable", str(err)).to_json(
            version
        )
    except AgentAPIError as err:
        return 1, CniError(AGENT_ERROR, f"pylium-agent refused: {err.path}", err.message).to_json(
            version
        )
    except CniError as err:
        return 1, err.to_json(version)
    except PyliumError as err:
        return 1, CniError(ErrorCode.IO_FAILURE, "failed", str(err)).to_json(version)


def main() -> None:
    stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    code, out = run(dict(os.environ), stdin)
    if out is not None:
        print(json.dumps(out))
    sys.exit(code)
