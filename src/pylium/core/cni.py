"""L2: the CNI wire protocol, sans I/O: parse a request, render results and errors.

A container runtime runs the plugin with the ``CNI_*`` environment variables and the network
configuration as JSON on stdin; the plugin prints a result (or an error object) as JSON on
stdout. This module turns (environment, stdin bytes) into a typed :class:`CniRequest` and typed
results back into the JSON the requested spec version expects, so that the I/O shell in
``pylium.cni`` stays a few lines. Spec: containernetworking/cni SPEC.md, versions 0.1.0-1.1.0.
"""

from __future__ import annotations

import enum
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""The spec versions pylium-cni accepts (upstream cilium-cni's list)."""


class Command(enum.Enum):
    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"
    VERSION = "VERSION"
    STATUS = "STATUS"
    GC = "GC"


class ErrorCode(enum.IntEnum):
    """Well-known CNI error codes (SPEC.md "Error"); 100+ are plugin specific."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    STATUS_UNAVAILABLE = 50
    STATUS_NO_IP_ADDRESSES = 51
    STATUS_NO_ROUTES = 52


@dataclass(frozen=True, slots=True)
class CniError(Exception):
    """An error the plugin reports to the runtime (printed as the spec's error object)."""

    code: ErrorCode | int
    msg: str
    details: str = ""

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": int(self.code), "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PortMapping:
    """One entry of the ``portMappings`` capability (HostPort)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The capability's JSON shape (what :func:`parse_port_mappings` reads back)."""
        return {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
            "hostIP": self.host_ip,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CniRequest:
    command: Command
    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str]
    """CNI_ARGS as a mapping (K8S_POD_NAMESPACE, K8S_POD_NAME, ...)."""
    path: tuple[str, ...]
    cni_version: str
    network_name: str
    plugin_type: str
    config: Mapping[str, Any]
    """The whole network configuration, for plugin-specific keys."""
    prev_result: Mapping[str, Any] | None = None
    port_mappings: tuple[PortMapping, ...] = ()

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, f"required env variable {name} missing")
    return value


def parse_cni_args(raw: str) -> dict[str, str]:
    """``CNI_ARGS`` is ``K1=V1;K2=V2``; a malformed pair is an INVALID_ENVIRONMENT error."""
    out: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(ErrorCode.INVALID_ENVIRONMENT, "invalid CNI_ARGS pair", pair)
        out[key] = value
    return out


def parse_request(env: Mapping[str, str], stdin: bytes) -> CniRequest:
    """A typed request from the plugin's environment and stdin, or a CniError."""
    raw_command = _require(env, "CNI_COMMAND")
    try:
        command = Command(raw_command)
    except ValueError:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "unknown CNI_COMMAND", raw_command) from None
    if command is Command.VERSION:
        config = _decode_config(stdin) if stdin.strip() else {}
        return CniRequest(
            command=command,
            container_id="",
            netns="",
            ifname="",
            args={},
            path=(),
            cni_version=str(config.get("cniVersion", SUPPORTED_VERSIONS[-1])),
            network_name="",
            plugin_type="",
            config=config,
        )
    config = _decode_config(stdin)
    version = str(config.get("cniVersion", ""))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            f"{version or '(none)'} is not one of {', '.join(SUPPORTED_VERSIONS)}",
        )
    needs_container = command in (Command.ADD, Command.DEL, Command.CHECK)
    container_id = _require(env, "CNI_CONTAINERID") if needs_container else ""
    ifname = _require(env, "CNI_IFNAME") if needs_container else ""
    # DEL may come without a netns (already gone); ADD and CHECK need one.
    netns = env.get("CNI_NETNS", "")
    if command in (Command.ADD, Command.CHECK) and not netns:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "required env variable CNI_NETNS missing")
    runtime_config = config.get("runtimeConfig") or {}
    return CniRequest(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        cni_version=version,
        network_name=str(config.get("name", "")),
        plugin_type=str(config.get("type", "")),
        config=config,
        prev_result=config.get("prevResult"),
        port_mappings=parse_port_mappings(runtime_config.get("portMappings") or []),
    )


def _decode_config(stdin: bytes) -> dict[str, Any]:
    try:
        config = json.loads(stdin)
    except ValueError as err:
        raise CniError(
            ErrorCode.DECODE_FAILURE, "failed to decode network configuration", str(err)
        ) from err
    if not isinstance(config, dict):
        raise CniError(ErrorCode.DECODE_FAILURE, "network configuration is not a JSON object")
    return config


def parse_port_mappings(raw: Any) -> tuple[PortMapping, ...]:
    """The ``portMappings`` capability's entries, or INVALID_NETWORK_CONFIG naming the bad one."""
    if not isinstance(raw, list):
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG, "invalid portMappings", "runtimeConfig.portMappings"
        )
    out = []
    for index, item in enumerate(raw):
        try:
            mapping = PortMapping(
                host_port=int(item["hostPort"]),
                container_port=int(item["containerPort"]),
                protocol=str(item.get("protocol", "tcp")).lower(),
                host_ip=str(item.get("hostIP", "")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CniError(
                ErrorCode.INVALID_NETWORK_CONFIG,
                "invalid portMappings entry",
                f"runtimeConfig.portMappings[{index}]: {err!r}",
            ) from err
        if not (0 < mapping.host_port < 65536 and 0 < mapping.container_port < 65536):
            raise CniError(
                ErrorCode.INVALID_NETWORK_CONFIG,
                "invalid portMappings entry",
                f"runtimeConfig.portMappings[{index}]: ports must be in 1-65535",
            )
        if mapping.protocol not in ("tcp", "udp", "sctp"):
            raise CniError(
                ErrorCode.INVALID_NETWORK_CONFIG,
                "invalid portMappings entry",
                f"runtimeConfig.portMappings[{index}].protocol: {mapping.protocol!r}",
            )
        out.append(mapping)
    return tuple(out)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    """The netns path for interfaces inside the container; empty for host-side ones."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IPConfig:
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    interface: int | None = None
    """Index into the result's interfaces."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    mtu: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AddResult:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict)


def render_result(result: AddResult, cni_version: str) -> dict[str, Any]:
    """The ADD result in the shape of ``cni_version`` (0.1/0.2 legacy, 0.3.x-0.4, 1.x)."""
    if cni_version in ("0.1.0", "0.2.0"):
        out: dict[str, Any] = {"cniVersion": cni_version}
        for ip in result.ips:
            family = "ip4" if ip.address.version == 4 else "ip6"
            legacy: dict[str, Any] = {"ip": str(ip.address)}
            if ip.gateway is not None:
                legacy["gateway"] = str(ip.gateway)
            routes = [_route(r) for r in result.routes if r.dst.version == ip.address.version]
            if routes:
                legacy["routes"] = routes
            out[family] = legacy
        if result.dns:
            out["dns"] = dict(result.dns)
        return out
    out = {"cniVersion": cni_version}
    out["interfaces"] = [
        {k: v for k, v in (("name", i.name), ("mac", i.mac), ("sandbox", i.sandbox)) if v}
        for i in result.interfaces
    ]
    ips = []
    for ip in result.ips:
        entry: dict[str, Any] = {"address": str(ip.address)}
        if cni_version in ("0.3.0", "0.3.1", "0.4.0"):
            entry["version"] = str(ip.address.version)
        if ip.gateway is not None:
            entry["gateway"] = str(ip.gateway)
        if ip.interface is not None:
            entry["interface"] = ip.interface
        ips.append(entry)
    out["ips"] = ips
    out["routes"] = [_route(r) for r in result.routes]
    out["dns"] = dict(result.dns)
    return out


def endpoint_result(
    *,
    host_ifname: str,
    host_mac: str,
    ifname: str,
    pod_mac: str,
    netns: str,
    address: ipaddress.IPv4Address,
    router: ipaddress.IPv4Address,
) -> AddResult:
    """The ADD result for one veth endpoint, in the shape chained plugins rely on: the host
    veth first (no sandbox: ``bandwidth`` finds it as the container interface's peer), the pod
    interface second with its netns as sandbox, the IP pointing at it by index (``portmap``
    only forwards to IPs of the sandbox interface named CNI_IFNAME), the default route via
    the router."""
    return AddResult(
        interfaces=(
            Interface(name=host_ifname, mac=host_mac),
            Interface(name=ifname, mac=pod_mac, sandbox=netns),
        ),
        ips=(
            IPConfig(address=ipaddress.IPv4Interface(f"{address}/32"), gateway=router, interface=1),
        ),
        routes=(Route(dst=ipaddress.IPv4Network("0.0.0.0/0"), gw=router),),
    )


def prev_result_addresses(prev: Mapping[str, Any] | None, ifname: str) -> tuple[str, ...]:
    """The addresses (without prefix length) a prevResult gives the sandbox interface
    ``ifname`` (0.3.0+ shape; legacy ``ip4``/``ip6`` too); a malformed prevResult is a
    DECODE_FAILURE."""
    if not prev:
        return ()
    try:
        if "ips" not in prev:
            return tuple(str(prev[f]["ip"]).split("/")[0] for f in ("ip4", "ip6") if prev.get(f))
        interfaces = list(prev.get("interfaces") or [])
        out = []
        for ip in prev["ips"]:
            index = ip.get("interface")
            if index is not None:
                iface = interfaces[int(index)]
                if iface.get("name") != ifname or not iface.get("sandbox"):
                    continue
            out.append(str(ipaddress.ip_interface(ip["address"]).ip))
        return tuple(out)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise CniError(ErrorCode.DECODE_FAILURE, "invalid prevResult", repr(err)) from err


def _route(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    if route.mtu:
        out["mtu"] = route.mtu
    return out


def render_version(cni_version: str) -> dict[str, Any]:
    """The VERSION answer."""
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}
