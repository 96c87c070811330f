"""L1: agent and operator settings, keyed by the names of Cilium's ``cilium-config`` ConfigMap.

Every field of :class:`AgentSettings` and :class:`OperatorSettings` carries its ConfigMap key
and a codec (string <-> typed value, with the per-value checks a CRD schema would make: enum
members, ranges, CIDR syntax, Maglev primes, the hash-seed length). Defaults are the ones a
Cilium user gets from the Helm chart; where the chart and the bare agent flag disagree, the
field's docstring says so. Checks that span several keys (native routing needs a CIDR, DSR
needs Geneve, ...) live in :mod:`pylium.core.settings`.
"""

# setting() returns a dataclasses.Field (like field()), which RUF009 cannot know.
# ruff: noqa: RUF009
from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any, Generic, Self, TypeVar

from pylium.base.errors import ConfigError

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)

KEY = "cilium-config-key"
CODEC = "codec"

VXLAN_PORT = 8472
GENEVE_PORT = 6081
MAGLEV_TABLE_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
DEFAULT_MAGLEV_HASH_SEED = "JLfvgnHc2kaSUFaI"
MAGLEV_HASH_SEED_BYTES = 12


class ConfigErrors(ConfigError):
    """Several configuration problems at once; ``errors`` holds one ConfigError per problem."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        first = self.errors[0] if self.errors else ConfigError("config", "invalid")
        super().__init__(first.key, first.message, source=first.source)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def lines(self) -> list[str]:
        return [str(e) for e in self.errors]


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest candidate, or "" when nothing is close."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    if word.lower() in lowered:
        return f' (did you mean "{lowered[word.lower()]}"?)'
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f' (did you mean "{match[0]}"?)' if match else ""


def render_scalar(value: object) -> str:
    """A value as Helm's template prints it: booleans lower-case, lists space-joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return " ".join(render_scalar(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Codecs: one per value shape. ``parse`` raises ValueError with a message naming what is
# allowed; the caller adds the key, the value and the source.


class Codec(Generic[T]):
    @property
    def allowed(self) -> str:
        return "a string"

    def parse(self, raw: str) -> T:
        raise NotImplementedError

    def render(self, value: T) -> str:
        return str(value)


class Str(Codec[str]):
    def parse(self, raw: str) -> str:
        return raw


class Bool(Codec[bool]):
    @property
    def allowed(self) -> str:
        return "true or false"

    # Go's strconv.ParseBool, which the agent's flag parsing uses.
    _TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
    _FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

    def parse(self, raw: str) -> bool:
        if raw in self._TRUE:
            return True
        if raw in self._FALSE:
            return False
        raise ValueError(f"allowed: {self.allowed}")

    def render(self, value: bool) -> str:
        return "true" if value else "false"


@dataclass(frozen=True, slots=True)
class Int(Codec[int]):
    low: int = 0
    high: int = 2**63 - 1
    choices: tuple[int, ...] = ()
    extra: Callable[[int], str] | None = None
    """Optional further check: returns an error message, or "" when the value is fine."""

    @property
    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"an integer from {self.low} to {self.high}"

    def parse(self, raw: str) -> int:
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise ValueError(f"not an integer; allowed: {self.allowed}") from None
        if self.choices and value not in self.choices:
            raise ValueError(f"allowed: {self.allowed}")
        if not self.low <= value <= self.high:
            raise ValueError(f"out of range; allowed: {self.allowed}")
        if self.extra is not None and (msg := self.extra(value)):
            raise ValueError(msg)
        return value


@dataclass(frozen=True, slots=True)
class Float(Codec[float]):
    low: float = 0.0
    high: float = float("inf")

    @property
    def allowed(self) -> str:
        return f"a number from {self.low:g} to {self.high:g}"

    def parse(self, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"not a number; allowed: {self.allowed}") from None
        if not self.low <= value <= self.high:
            raise ValueError(f"out of range; allowed: {self.allowed}")
        return value

    def render(self, value: float) -> str:
        return f"{value:g}"


@dataclass(frozen=True, slots=True)
class Choice(Codec[E]):
    enum: type[E]

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(m.value for m in self.enum)

    def parse(self, raw: str) -> E:
        try:
            return self.enum(raw)
        except ValueError:
            hint = suggest(raw, (m.value for m in self.enum))
            raise ValueError(f"allowed: {self.allowed}{hint}") from None

    def render(self, value: E) -> str:
        return value.value


def _split(raw: str, commas: bool) -> list[str]:
    return [p for p in re.split(r"[\s,]+" if commas else r"\s+", raw.strip()) if p]


@dataclass(frozen=True, slots=True)
class Words(Codec[tuple[str, ...]]):
    """A list rendered space-separated (the chart's ``join " "``); ``commas`` also splits on ','."""

    commas: bool = True

    @property
    def allowed(self) -> str:
        return "a space-separated list"

    def parse(self, raw: str) -> tuple[str, ...]:
        return tuple(_split(raw, self.commas))

    def render(self, value: tuple[str, ...]) -> str:
        return " ".join(value)


@dataclass(frozen=True, slots=True)
class Choices(Codec[tuple[E, ...]]):
    """A space- (or comma-) separated list of enum members, duplicates dropped, order kept."""

    enum: type[E]

    @property
    def allowed(self) -> str:
        return "a space-separated list of " + ", ".join(m.value for m in self.enum)

    def parse(self, raw: str) -> tuple[E, ...]:
        out: list[E] = []
        for word in _split(raw, True):
            try:
                member = self.enum(word)
            except ValueError:
                hint = suggest(word, (m.value for m in self.enum))
                raise ValueError(f'"{word}": allowed: {self.allowed}{hint}') from None
            if member not in out:
                out.append(member)
        return tuple(out)

    def render(self, value: tuple[E, ...]) -> str:
        return " ".join(m.value for m in value)


def parse_network(raw: str, version: int) -> Any:
    """A CIDR of the given IP version, without host bits (``10.0.0.1/8`` is refused)."""
    example = "10.0.0.0/8" if version == 4 else "fd00::/104"
    try:
        net = ip_network(raw, strict=False)
    except ValueError:
        raise ValueError(
            f'"{raw}" is not a CIDR; allowed: an IPv{version} CIDR like {example}'
        ) from None
    if "/" not in raw:
        raise ValueError(f'"{raw}" has no prefix length; allowed: an IPv{version} CIDR')
    if net.version != version:
        raise ValueError(f'"{raw}" is an IPv{net.version} CIDR; allowed: an IPv{version} CIDR')
    if net.network_address != ip_network(raw.split("/")[0]).network_address:
        raise ValueError(f'"{raw}" has host bits set (did you mean "{net}"?)')
    return net


@dataclass(frozen=True, slots=True)
class Networks(Codec[tuple[Any, ...]]):
    version: int = 4

    @property
    def allowed(self) -> str:
        return f"a space-separated list of IPv{self.version} CIDRs"

    def parse(self, raw: str) -> tuple[Any, ...]:
        return tuple(parse_network(p, self.version) for p in _split(raw, True))

    def render(self, value: tuple[Any, ...]) -> str:
        return " ".join(str(n) for n in value)


@dataclass(frozen=True, slots=True)
class OptionalNetwork(Codec[Any]):
    version: int = 4

    @property
    def allowed(self) -> str:
        return f"an IPv{self.version} CIDR, or empty"

    def parse(self, raw: str) -> Any:
        return parse_network(raw.strip(), self.version) if raw.strip() else None

    def render(self, value: Any) -> str:
        return "" if value is None else str(value)


@dataclass(frozen=True, slots=True, order=True)
class NodePortRange:
    """The NodePort range, both ends inclusive."""

    min: int = 30000
    max: int = 32767

    def __str__(self) -> str:
        return f"{self.min},{self.max}"


class PortRange(Codec[NodePortRange]):
    @property
    def allowed(self) -> str:
        return 'two ports "min,max" with min < max (e.g. "30000,32767")'

    def parse(self, raw: str) -> NodePortRange:
        # The agent splits on ','; "min-max" (kube-apiserver's spelling) is accepted too.
        parts = [p.strip() for p in re.split(r"[,-]", raw.strip())]
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"malformed range; allowed: {self.allowed}")
        low, high = int(parts[0]), int(parts[1])
        if not 0 < low < high <= 65535:
            raise ValueError(f"bad bounds; allowed: {self.allowed}, ports 1-65535")
        return NodePortRange(min=low, max=high)


class HashSeed(Codec[str]):
    @property
    def allowed(self) -> str:
        return f"base64 of exactly {MAGLEV_HASH_SEED_BYTES} bytes (16 characters)"

    def parse(self, raw: str) -> str:
        try:
            decoded = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"not base64; allowed: {self.allowed}") from None
        if len(decoded) != MAGLEV_HASH_SEED_BYTES:
            raise ValueError(f"decodes to {len(decoded)} bytes; allowed: {self.allowed}")
        return raw


class Tags(Codec[tuple[tuple[str, str], ...]]):
    """A string map: JSON (what the chart renders) or ``k=v,k2=v2`` (the flag syntax)."""

    @property
    def allowed(self) -> str:
        return 'a JSON object of strings or "key=value,key2=value2"'

    def parse(self, raw: str) -> tuple[tuple[str, str], ...]:
        text = raw.strip()
        if not text:
            return ()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"bad JSON; allowed: {self.allowed}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"allowed: {self.allowed}")
            return tuple(sorted((str(k), render_scalar(v)) for k, v in obj.items()))
        pairs = []
        for item in _split(text, True):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f'"{item}" is not key=value; allowed: {self.allowed}')
            pairs.append((key, value))
        return tuple(sorted(pairs))

    def render(self, value: tuple[tuple[str, str], ...]) -> str:
        return json.dumps(dict(value), separators=(",", ":")) if value else ""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class Duration(Codec[timedelta]):
    """A Go duration (``5m``, ``1h30m``, ``15m0s``)."""

    @property
    def allowed(self) -> str:
        return 'a duration like "30s", "5m" or "1h30m"'

    def parse(self, raw: str) -> timedelta:
        text = raw.strip()
        if text == "0":
            return timedelta(0)
        pos, seconds = 0, 0.0
        for m in _DURATION_PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"allowed: {self.allowed}")
        return timedelta(seconds=seconds)

    def render(self, value: timedelta) -> str:
        total = int(value.total_seconds())
        hours, rest = divmod(total, 3600)
        minutes, seconds = divmod(rest, 60)
        out = f"{hours}h" if hours else ""
        out += f"{minutes}m" if hours or minutes else ""
        return out + f"{seconds}s"


def _power_of_two_minus_one(value: int) -> str:
    return "" if value & (value + 1) == 0 else "must be 2^n-1 (e.g. 4095)"


def setting(key: str, default: T, codec: Codec[Any]) -> T:
    """A dataclass field bound to a ConfigMap key."""
    return field(default=default, metadata={KEY: key, CODEC: codec})


# --------------------------------------------------------------------------------------------
# Enumerations, with Cilium's spellings.


class IPAMMode(StrEnum):
    CLUSTER_POOL = "cluster-pool"
    KUBERNETES = "kubernetes"
    MULTI_POOL = "multi-pool"
    CRD = "crd"
    ENI = "eni"
    AZURE = "azure"
    ALIBABACLOUD = "alibabacloud"
    DELEGATED_PLUGIN = "delegated-plugin"


class RoutingMode(StrEnum):
    TUNNEL = "tunnel"
    NATIVE = "native"


class TunnelProtocol(StrEnum):
    VXLAN = "vxlan"
    GENEVE = "geneve"


class UnderlayProtocol(StrEnum):
    AUTO = "auto"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class LBAlgorithm(StrEnum):
    RANDOM = "random"
    MAGLEV = "maglev"


class LBMode(StrEnum):
    SNAT = "snat"
    DSR = "dsr"
    HYBRID = "hybrid"


class DSRDispatch(StrEnum):
    OPT = "opt"
    IPIP = "ipip"
    GENEVE = "geneve"


class LBAcceleration(StrEnum):
    DISABLED = "disabled"
    NATIVE = "native"
    BEST_EFFORT = "best-effort"


class NoBackendResponse(StrEnum):
    REJECT = "reject"
    DROP = "drop"


class MonitorAggregation(StrEnum):
    """How much of forwarded traffic the datapath traces (drops are always reported)."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    MAXIMUM = "maximum"

    @property
    def level(self) -> int:
        """The datapath's number (its ``monitor_aggregation`` load-time constant)."""
        return list(MonitorAggregation).index(self)


class PolicyEnforcement(StrEnum):
    DEFAULT = "default"
    ALWAYS = "always"
    NEVER = "never"


class IdentityAllocationMode(StrEnum):
    CRD = "crd"
    KVSTORE = "kvstore"
    DOUBLEWRITE_READKVSTORE = "doublewrite-readkvstore"
    DOUBLEWRITE_READCRD = "doublewrite-readcrd"


class CNIChainingMode(StrEnum):
    NONE = "none"
    AWS_CNI = "aws-cni"
    AZURE = "azure"
    FLANNEL = "flannel"
    GENERIC_VETH = "generic-veth"
    PORTMAP = "portmap"


class CNIChainedPlugin(StrEnum):
    """Reference plugins (containernetworking-plugins) pylium can chain after cilium-cni."""

    PORTMAP = "portmap"
    BANDWIDTH = "bandwidth"


_PORT = Int(0, 65535)
_COUNT = Int(0)


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class _ConfigMapBacked:
    """Shared machinery: key table, ConfigMap parsing and rendering."""

    @classmethod
    def keys(cls) -> dict[str, Any]:
        """ConfigMap key -> dataclass field."""
        return {f.metadata[KEY]: f for f in fields(cls) if KEY in f.metadata}

    @classmethod
    def from_configmap(
        cls, data: Mapping[str, str], *, source: str = "", sources: Mapping[str, str] | None = None
    ) -> Self:
        """Typed settings from ConfigMap data. Keys this class does not own are ignored (the
        ConfigMap is shared by agent and operator); use :func:`check_known_keys` to refuse
        unknown ones. Every bad value is reported, each naming key, value and what is allowed;
        ``sources`` (key -> where it came from) overrides ``source`` per key."""
        values: dict[str, Any] = {}
        errors: list[ConfigError] = []
        for key, fld in cls.keys().items():
            if key not in data:
                continue
            raw = data[key]
            try:
                values[fld.name] = fld.metadata[CODEC].parse(raw)
            except ValueError as err:
                errors.append(
                    ConfigError(
                        key,
                        f'invalid value "{raw}": {err}',
                        source=(sources or {}).get(key, source),
                    )
                )
        if errors:
            raise ConfigErrors(errors)
        return cls(**values)

    def to_configmap(self) -> dict[str, str]:
        """Every key of these settings rendered as ConfigMap strings, sorted by key."""
        out = {}
        for key, fld in sorted(self.keys().items()):
            out[key] = fld.metadata[CODEC].render(getattr(self, fld.name))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings(_ConfigMapBacked):
    """Keys both the agent and the operator read."""

    ipam: IPAMMode = setting("ipam", IPAMMode.CLUSTER_POOL, Choice(IPAMMode))
    """IPAM mode: who hands out pod IPs. cluster-pool: the operator carves per-node CIDRs."""
    cluster_pool_ipv4_cidr: tuple[IPv4Network, ...] = setting(
        "cluster-pool-ipv4-cidr", (IPv4Network("10.0.0.0/8"),), Networks(4)
    )
    """cluster-pool IPv4 pools (Helm ``ipam.operator.clusterPoolIPv4PodCIDRList``). Append
    only: existing entries must never change. Default 10.0.0.0/8."""
    cluster_pool_ipv4_mask_size: int = setting("cluster-pool-ipv4-mask-size", 24, Int(1, 32))
    """Prefix length of each node's IPv4 PodCIDR (default 24: 254 pods). Immutable once
    deployed; /30 is the minimum (2 pod IPs), /29 or shorter recommended."""
    cluster_pool_ipv6_cidr: tuple[IPv6Network, ...] = setting(
        "cluster-pool-ipv6-cidr", (IPv6Network("fd00::/104"),), Networks(6)
    )
    """cluster-pool IPv6 pools, used when enable-ipv6. Default fd00::/104."""
    cluster_pool_ipv6_mask_size: int = setting("cluster-pool-ipv6-mask-size", 120, Int(1, 128))
    """Prefix length of each node's IPv6 PodCIDR; at most 16 bits longer than the pool."""
    enable_ipv4: bool = setting("enable-ipv4", True, Bool())
    """Give every endpoint an IPv4 address. Default true."""
    enable_ipv6: bool = setting("enable-ipv6", False, Bool())
    """Give every endpoint an IPv6 address. Default false."""
    cluster_name: str = setting("cluster-name", "default", Str())
    """Name of this cluster (Helm ``cluster.name``); matters for cluster mesh and ENI GC tags."""
    cluster_id: int = setting("cluster-id", 0, Int(0, 255))
    """Numeric cluster ID, 0-255, unique in a mesh (Helm ``cluster.id``). Default 0."""
    identity_allocation_mode: IdentityAllocationMode = setting(
        "identity-allocation-mode", IdentityAllocationMode.CRD, Choice(IdentityAllocationMode)
    )
    """Where identities are stored: crd (Helm default; the bare agent flag says kvstore)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings(ClusterSettings):
    """Everything the agent reads from ``cilium-config``. Defaults are the Helm chart's."""

    # IPAM
    ipam_pre_allocate: int = setting("ipam-pre-allocate", 8, _COUNT)
    """ENI/CRD IPAM: IPs kept allocated ahead of demand (Cilium IPAMPreAllocation = 8)."""
    ipam_min_allocate: int = setting("ipam-min-allocate", 0, _COUNT)
    """ENI/CRD IPAM: IPs allocated when the node comes up; 0 means none."""
    ipam_max_allocate: int = setting("ipam-max-allocate", 0, _COUNT)
    """ENI/CRD IPAM: upper bound of IPs per node; 0 means unlimited."""
    auto_create_cilium_node_resource: bool = setting(
        "auto-create-cilium-node-resource", True, Bool()
    )
    """The agent creates its own CiliumNode at start-up (needed by ENI/Azure IPAM)."""

    # Routing
    routing_mode: RoutingMode = setting("routing-mode", RoutingMode.TUNNEL, Choice(RoutingMode))
    """tunnel: pod traffic between nodes is encapsulated; native: handed to the kernel's
    routing (needs ipv4-native-routing-cidr). Helm renders native when eni/gke is enabled."""
    tunnel_protocol: TunnelProtocol = setting(
        "tunnel-protocol", TunnelProtocol.VXLAN, Choice(TunnelProtocol)
    )
    """Encapsulation in tunnel mode: vxlan (default) or geneve."""
    tunnel_port: int = setting("tunnel-port", 0, _PORT)
    """UDP port of the tunnel; 0 means the protocol's port (VXLAN 8472, Geneve 6081)."""
    underlay_protocol: UnderlayProtocol = setting(
        "underlay-protocol", UnderlayProtocol.AUTO, Choice(UnderlayProtocol)
    )
    """IP family of the tunnel underlay: auto (IPv4 preferred), ipv4 or ipv6."""
    ipv4_native_routing_cidr: IPv4Network | None = setting(
        "ipv4-native-routing-cidr", None, OptionalNetwork(4)
    )
    """Destinations reachable without masquerading (not SNATed, handed to the kernel)."""
    ipv6_native_routing_cidr: IPv6Network | None = setting(
        "ipv6-native-routing-cidr", None, OptionalNetwork(6)
    )
    """IPv6 twin of ipv4-native-routing-cidr."""
    auto_direct_node_routes: bool = setting("auto-direct-node-routes", False, Bool())
    """Native routing: install ``podCIDR via nodeIP`` routes to every other node; only
    valid when the nodes share an L2 segment."""
    direct_routing_skip_unreachable: bool = setting(
        "direct-routing-skip-unreachable", False, Bool()
    )
    """With auto-direct-node-routes: skip nodes whose IP is not on a directly reachable
    subnet (leave them to BGP) instead of failing."""
    enable_endpoint_routes: bool = setting("enable-endpoint-routes", False, Bool())
    """One route per endpoint to its lxc device instead of one via cilium_host (required by
    ENI, Azure and AlibabaCloud IPAM; the chart forces it there)."""
    mtu: int = setting(
        "mtu",
        0,
        Int(
            0,
            65520,
            extra=lambda v: "" if v == 0 or v >= 68 else "must be 0 (auto-detect) or 68-65520",
        ),
    )
    """MTU of cilium_host/cilium_net/tunnel/pod devices; 0 = auto-detect (1500 if unknown)."""
    labels: tuple[str, ...] = setting("labels", (), Words())
    """Identity-relevant label patterns (Helm ``labels``): ``prefix`` keeps, ``!prefix`` drops;
    any keep-pattern switches from Cilium's default filter to a whitelist. Default: empty
    (Cilium's default filter)."""
    devices: tuple[str, ...] = setting("devices", (), Words())
    """Native devices that get bpf_host (NodePort, host firewall, BPF masquerade); empty
    means auto-detect."""
    direct_routing_device: str = setting("direct-routing-device", "", Str())
    """Device used for NodePort/DSR forwarding to other nodes; empty = auto-detect."""

    enable_host_legacy_routing: bool = setting("enable-host-legacy-routing", False, Bool())
    """Route pods' traffic through the node's stack (Legacy) instead of in eBPF (Helm
    ``bpf.hostLegacyRouting``); BPF host routing is the default where the kernel has
    bpf_redirect_neigh and bpf_redirect_peer."""

    # Masquerading
    enable_ipv4_masquerade: bool = setting("enable-ipv4-masquerade", True, Bool())
    """SNAT pod traffic leaving the native-routing CIDR to the node IP. Helm turns it off
    with ENI IPAM (pods have VPC addresses)."""
    enable_ipv6_masquerade: bool = setting("enable-ipv6-masquerade", True, Bool())
    """IPv6 twin of enable-ipv4-masquerade."""
    enable_bpf_masquerade: bool = setting("enable-bpf-masquerade", False, Bool())
    """Masquerade in eBPF instead of iptables (Helm ``bpf.masquerade``)."""
    enable_ip_masq_agent: bool = setting("enable-ip-masq-agent", False, Bool())
    """Use the ip-masq-agent's non-masquerade CIDR list (Helm ``ipMasqAgent.enabled``)."""
    egress_masquerade_interfaces: tuple[str, ...] = setting(
        "egress-masquerade-interfaces", (), Words()
    )
    """Only masquerade traffic leaving these interfaces (patterns like ``eth+``); empty =
    every device."""

    # Service load-balancing (kube-proxy replacement)
    kube_proxy_replacement: bool = setting("kube-proxy-replacement", False, Bool())
    """Replace kube-proxy entirely (NodePort, LoadBalancer, ExternalIPs, HostPort in eBPF);
    forces bpf-lb-sock. A boolean since Cilium 1.16."""
    bpf_lb_sock: bool = setting("bpf-lb-sock", False, Bool())
    """Socket-LB: translate ClusterIP at connect() time in cgroup hooks instead of per packet."""
    bpf_lb_sock_hostns_only: bool = setting("bpf-lb-sock-hostns-only", False, Bool())
    """Socket-LB only for the host network namespace (pods use per-packet translation)."""
    bpf_lb_algorithm: LBAlgorithm = setting(
        "bpf-lb-algorithm", LBAlgorithm.RANDOM, Choice(LBAlgorithm)
    )
    """Backend selection: random (default) or maglev (consistent hashing)."""
    bpf_lb_mode: LBMode = setting("bpf-lb-mode", LBMode.SNAT, Choice(LBMode))
    """NodePort forwarding to remote backends: snat (default), dsr, or hybrid (DSR for TCP,
    SNAT for UDP)."""
    bpf_lb_dsr_dispatch: DSRDispatch = setting(
        "bpf-lb-dsr-dispatch", DSRDispatch.OPT, Choice(DSRDispatch)
    )
    """How DSR carries the service address: opt (IP option/extension header), ipip, geneve."""
    bpf_lb_acceleration: LBAcceleration = setting(
        "bpf-lb-acceleration", LBAcceleration.DISABLED, Choice(LBAcceleration)
    )
    """XDP acceleration of NodePort: disabled (default), native or best-effort."""
    bpf_lb_maglev_table_size: int = setting(
        "bpf-lb-maglev-table-size", 16381, Int(choices=MAGLEV_TABLE_SIZES)
    )
    """Maglev lookup-table size M per service, a prime; M >= 100 x backends keeps the
    imbalance under 1%. Default 16381."""
    bpf_lb_maglev_hash_seed: str = setting(
        "bpf-lb-maglev-hash-seed", DEFAULT_MAGLEV_HASH_SEED, HashSeed()
    )
    """Base64 of 12 bytes seeding Maglev's hashes; must be identical cluster-wide so every
    node picks the same backend."""
    bpf_lb_map_max: int = setting("bpf-lb-map-max", 65536, Int(1))
    """Entries of the service, backend and affinity maps (default 65536)."""
    bpf_lb_external_clusterip: bool = setting("bpf-lb-external-clusterip", False, Bool())
    """Make ClusterIPs reachable from outside the cluster."""
    conntrack_gc_interval: timedelta = setting("conntrack-gc-interval", timedelta(0), Duration())
    """Fixed interval of the conntrack garbage collector (Helm ``conntrackGCInterval``); 0:
    adapt it to how much each run deletes, starting at 5 minutes, as upstream."""
    conntrack_gc_max_interval: timedelta = setting(
        "conntrack-gc-max-interval", timedelta(0), Duration()
    )
    """Upper bound of the adaptive interval (Helm ``conntrackGCMaxInterval``); 0: 12 hours."""
    bpf_lb_algorithm_annotation: bool = setting("bpf-lb-algorithm-annotation", False, Bool())
    """Honour ``service.cilium.io/lb-algorithm`` per service."""
    bpf_lb_mode_annotation: bool = setting("bpf-lb-mode-annotation", False, Bool())
    """Honour ``service.cilium.io/forwarding-mode`` per service."""
    node_port_range: NodePortRange = setting("node-port-range", NodePortRange(), PortRange())
    """NodePort range, inclusive (default 30000-32767, rendered "30000,32767")."""
    enable_health_check_nodeport: bool = setting("enable-health-check-nodeport", True, Bool())
    """Serve healthCheckNodePort for externalTrafficPolicy=Local services."""
    node_port_bind_protection: bool = setting("node-port-bind-protection", True, Bool())
    """Refuse bind() on NodePort ports from the host."""
    enable_service_topology: bool = setting("enable-service-topology", False, Bool())
    """Honour topology-aware hints when selecting backends."""
    service_no_backend_response: NoBackendResponse = setting(
        "service-no-backend-response", NoBackendResponse.REJECT, Choice(NoBackendResponse)
    )
    """What a service without backends answers: reject (ICMP unreachable) or drop."""

    # CNI
    write_cni_conf_when_ready: str = setting(
        "write-cni-conf-when-ready", "/host/etc/cni/net.d/05-cilium.conflist", Str()
    )
    """Where the agent writes its CNI config once ready (Helm default; the bare agent flag
    is empty = write nothing)."""
    cni_exclusive: bool = setting("cni-exclusive", True, Bool())
    """Rename every other CNI config to ``*.cilium_bak`` and keep watching the directory
    (Helm default true; the bare agent flag defaults to false)."""
    cni_log_file: str = setting("cni-log-file", "/var/run/cilium/cilium-cni.log", Str())
    """Log file of the CNI plugin, written into its config file."""
    cni_chaining_mode: CNIChainingMode = setting(
        "cni-chaining-mode", CNIChainingMode.NONE, Choice(CNIChainingMode)
    )
    """Chain behind another CNI plugin (none, aws-cni, azure, flannel, generic-veth, portmap)."""
    cni_chaining_target: str = setting("cni-chaining-target", "", Str())
    """Network name whose plugin list gets the cilium-cni entry (``*`` = any)."""
    cni_external_routing: bool = setting("cni-external-routing", False, Bool())
    """The chained plugin owns routing; the agent installs no pod routes."""
    custom_cni_conf: bool = setting("custom-cni-conf", False, Bool())
    """The user manages the CNI config file; the agent does not write it."""
    read_cni_conf: str = setting("read-cni-conf", "", Str())
    """Path of a CNI config whose content the agent writes verbatim instead of generating one
    (Helm ``cni.readCniConf``, or ``cni.configMap`` mounted at ``<mountPath>/<key>``)."""
    cni_uninstall: bool = setting("cni-uninstall", False, Bool())
    """Remove the CNI config on agent shutdown."""
    cni_chained_plugins: tuple[CNIChainedPlugin, ...] = setting(
        "cni-chained-plugins", (), Choices(CNIChainedPlugin)
    )
    """pylium key (Helm ``cni.chainedPlugins``; upstream needs a ``cni.configMap`` for this):
    reference plugins appended after cilium-cni in the generated conflist, in order
    (``portmap``, ``bandwidth``); ``cni-chaining-mode: portmap`` implies ``portmap``."""
    cni_install: bool = setting("cni-install", True, Bool())
    """pylium key (upstream: the chart's install-cni-binaries init container, Helm
    ``cni.install``): once ready, the agent puts the plugin executable ``cilium-cni`` (which
    runs pylium-cni) into ``cni-bin-path``, atomically."""
    cni_bin_path: str = setting("cni-bin-path", "/opt/cni/bin", Str())
    """pylium key (upstream: the DaemonSet's hostPath mount, Helm ``cni.binPath``): the CNI bin
    directory the runtime searches (Debian's runtimes search /usr/lib/cni)."""

    # Policy
    monitor_aggregation: MonitorAggregation = setting(
        "monitor-aggregation", MonitorAggregation.MEDIUM, Choice(MonitorAggregation)
    )
    """Trace events for forwarded packets: ``none`` traces every packet; from ``low`` on only
    a connection's first packet and new TCP flags per direction (Helm
    ``bpf.monitorAggregation``, default medium)."""
    enable_policy: PolicyEnforcement = setting(
        "enable-policy", PolicyEnforcement.DEFAULT, Choice(PolicyEnforcement)
    )
    """Policy enforcement mode: default (per direction once a rule selects the endpoint),
    always, never (Helm ``policyEnforcementMode``)."""
    policy_audit_mode: bool = setting("policy-audit-mode", False, Bool())
    """Log would-be drops as AUDIT verdicts but forward the packets."""
    enable_host_firewall: bool = setting("enable-host-firewall", False, Bool())
    """Enforce policies selecting nodes (the host endpoint, identity 1)."""
    enable_l7_proxy: bool = setting("enable-l7-proxy", True, Bool())
    """Enable L7 (HTTP/DNS) policy through the proxy."""
    bpf_policy_map_max: int = setting("bpf-policy-map-max", 16384, Int(1))
    """Entries per endpoint policy map (default 16384)."""

    # Hubble
    enable_hubble: bool = setting("enable-hubble", True, Bool())
    """Run the Hubble observer in the agent (Helm default true; bare agent flag false)."""
    hubble_listen_address: str = setting("hubble-listen-address", ":4244", Str())
    """TCP address of the Hubble gRPC server; empty = unix socket only. Default :4244."""
    hubble_socket_path: str = setting("hubble-socket-path", "/var/run/cilium/hubble.sock", Str())
    """Unix socket of the local Hubble server."""
    hubble_event_buffer_capacity: int = setting(
        "hubble-event-buffer-capacity", 4095, Int(1, 65535, extra=_power_of_two_minus_one)
    )
    """Flows kept in the ring buffer; 2^n-1, at most 65535 (default 4095)."""
    hubble_metrics_server: str = setting("hubble-metrics-server", "", Str())
    """Address of the Hubble metrics endpoint (":9965" when metrics are enabled); empty = off."""
    hubble_metrics: tuple[str, ...] = setting("hubble-metrics", (), Words(commas=False))
    """Enabled Hubble metric handlers with options, e.g. ``dns:query;ignoreAAAA drop tcp flow``
    (space-separated: options may contain commas)."""
    enable_hubble_open_metrics: bool = setting("enable-hubble-open-metrics", False, Bool())
    """Serve OpenMetrics (exemplars) instead of the Prometheus text format."""

    # Metrics
    prometheus_serve_addr: str = setting("prometheus-serve-addr", "", Str())
    """Address of the agent's ``cilium_*`` metrics endpoint (Helm ``prometheus.enabled`` renders
    ":9962"); empty = off."""

    # Health and misc
    enable_health_checking: bool = setting("enable-health-checking", True, Bool())
    """Probe every node (ICMP + HTTP 4240) and report cluster health."""
    enable_endpoint_health_checking: bool = setting("enable-endpoint-health-checking", True, Bool())
    """Run the health endpoint (lxc_health) on each node and probe it."""
    agent_health_port: int = setting("agent-health-port", 9879, _PORT)
    """TCP port of the agent's own /healthz (not cilium-health). Default 9879."""
    cluster_health_port: int = setting("cluster-health-port", 4240, _PORT)
    """TCP port of cilium-health probes between nodes. Default 4240."""
    debug: bool = setting("debug", False, Bool())
    """Debug logging (also enables debug in the CNI plugin's config)."""
    bpf_root: str = setting("bpf-root", "/sys/fs/bpf", Str())
    """Mount point of the BPF filesystem where maps are pinned."""
    cgroup_root: str = setting("cgroup-root", "/run/cilium/cgroupv2", Str())
    """Root of the cgroup v2 hierarchy the socket-LB programs attach to (Helm
    ``cgroup.hostRoot``)."""
    bpf_auto_mount: bool = setting("bpf-auto-mount", True, Bool())
    """pylium key (upstream: the chart's mount-bpf-fs init container, Helm
    ``bpf.autoMount.enabled``): mount bpffs at bpf-root when it is not mounted."""
    cgroup_auto_mount: bool = setting("cgroup-auto-mount", True, Bool())
    """pylium key (upstream: the chart's mount-cgroup init container, Helm
    ``cgroup.autoMount.enabled``): mount cgroup2 at cgroup-root when it is not mounted."""

    @property
    def effective_tunnel_port(self) -> int:
        """tunnel-port, with 0 resolved to the protocol's well-known port."""
        if self.tunnel_port:
            return self.tunnel_port
        return VXLAN_PORT if self.tunnel_protocol is TunnelProtocol.VXLAN else GENEVE_PORT

    @property
    def socket_lb(self) -> bool:
        """Socket-LB is on when asked for, or implied by kube-proxy-replacement."""
        return self.bpf_lb_sock or self.kube_proxy_replacement


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorSettings(ClusterSettings):
    """What the operator reads from ``cilium-config`` (cluster pools, ENI, GC)."""

    eni_tags: tuple[tuple[str, str], ...] = setting("eni-tags", (), Tags())
    """Tags put on every ENI the operator creates (Helm ``eni.eniTags``)."""
    eni_gc_tags: tuple[tuple[str, str], ...] = setting("eni-gc-tags", (), Tags())
    """Tags marking ENIs the operator may garbage-collect; empty = io.cilium/cilium-managed
    and io.cilium/cluster-name=<cluster-name>."""
    eni_gc_interval: timedelta = setting("eni-gc-interval", timedelta(minutes=5), Duration())
    """How often unattached ENIs are collected; 0 disables. Default 5m."""
    aws_release_excess_ips: bool = setting("aws-release-excess-ips", False, Bool())
    """Release IPs above min-allocate + max-above-watermark back to EC2."""
    excess_ip_release_delay: int = setting("excess-ip-release-delay", 180, _COUNT)
    """Seconds an excess IP stays marked before it is released (default 180)."""
    aws_enable_prefix_delegation: bool = setting("aws-enable-prefix-delegation", False, Bool())
    """Allocate /28 prefixes to ENIs instead of single IPs."""
    ec2_api_endpoint: str = setting("ec2-api-endpoint", "", Str())
    """EC2 API endpoint override (e.g. a local moto server); empty = the region's default."""
    subnet_ids_filter: tuple[str, ...] = setting("subnet-ids-filter", (), Words())
    """Only allocate from these subnet IDs."""
    subnet_tags_filter: tuple[tuple[str, str], ...] = setting("subnet-tags-filter", (), Tags())
    """Only allocate from subnets carrying all these tags."""
    instance_tags_filter: tuple[tuple[str, str], ...] = setting("instance-tags-filter", (), Tags())
    """Only manage instances carrying all these tags."""
    azure_subscription_id: str = setting("azure-subscription-id", "", Str())
    """Azure IPAM: the subscription of the nodes' resource group (Helm
    ``azure.subscriptionID``); upstream falls back to the instance metadata."""
    azure_resource_group: str = setting("azure-resource-group", "", Str())
    """Azure IPAM: the resource group whose VMs and scale sets hold the nodes' NICs (Helm
    ``azure.resourceGroup``)."""
    azure_user_assigned_identity_id: str = setting("azure-user-assigned-identity-id", "", Str())
    """Azure IPAM: client ID of the user-assigned managed identity to authenticate with
    (Helm ``azure.userAssignedIdentityID``); empty = the system-assigned identity or a client
    secret."""
    alibaba_cloud_vpc_id: str = setting("alibaba-cloud-vpc-id", "", Str())
    """AlibabaCloud IPAM: only ENIs, vSwitches and security groups of this VPC."""
    alibaba_cloud_release_excess_ips: bool = setting(
        "alibaba-cloud-release-excess-ips", False, Bool()
    )
    """AlibabaCloud IPAM: release IPs above min-allocate + max-above-watermark."""
    limit_ipam_api_qps: float = setting("limit-ipam-api-qps", 4.0, Float(0.001))
    """Cloud API (EC2) calls per second the operator allows itself: the token bucket's rate."""
    limit_ipam_api_burst: int = setting("limit-ipam-api-burst", 20, Int(1))
    """Cloud API calls the token bucket lets through in a burst (default 20)."""
    aws_max_results_per_call: int = setting("aws-max-results-per-call", 0, _COUNT)
    """MaxResults of EC2 Describe* calls; 0 lets EC2 choose (upstream default)."""
    operator_prometheus_serve_addr: str = setting("operator-prometheus-serve-addr", ":9963", Str())
    """Address of the operator's ``cilium_operator_*`` metrics endpoint (Helm
    ``operator.prometheus.enabled``/``port``, default on at :9963); empty = off."""
    identity_gc_interval: timedelta = setting(
        "identity-gc-interval", timedelta(minutes=15), Duration()
    )
    """How often unused identities are garbage-collected (Helm ``operator.identityGCInterval``)."""
    identity_heartbeat_timeout: timedelta = setting(
        "identity-heartbeat-timeout", timedelta(minutes=30), Duration()
    )
    """How long an identity without a user lives before collection."""


def all_keys() -> dict[str, Any]:
    """Every ConfigMap key pylium understands (agent and operator) -> its field."""
    return {**AgentSettings.keys(), **OperatorSettings.keys()}
