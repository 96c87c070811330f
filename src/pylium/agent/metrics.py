"""L5: the agent's Prometheus metrics, with upstream's names and ports.

``prometheus-serve-addr`` (Helm ``prometheus.enabled``: ``:9962``) serves ``cilium_*``:
``cilium_drop_count_total`` / ``cilium_drop_bytes_total`` {reason, direction} and
``cilium_forward_count_total`` / ``cilium_forward_bytes_total`` {direction}, read from the
datapath's per-CPU metrics map at every scrape (a custom collector, nothing cached), and
gauges ``cilium_endpoint``, ``cilium_identity`` {type}, ``cilium_policy``,
``cilium_ip_addresses`` {family}, ``cilium_bpf_map_pressure`` {map_name}.

``hubble-metrics-server`` (Helm ``hubble.metrics.enabled``: ``:9965``) serves the ``hubble_*``
counters of the handlers in ``hubble-metrics`` (:mod:`pylium.core.hubble.metrics`), fed by
the Hubble observer's flow pipeline (a listener on :class:`HubbleObserver`, not a second
reader of the events), and ``hubble_lost_events_total``.

Both registries are also listed on the agent API (``GET /v1/metrics``, ``pylium metrics
list``), whether or not their servers run (the hubble one when its handlers are set).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pylium.adapters.maps import metrics as metrics_map
from pylium.adapters.maps import pressure
from pylium.adapters.resources import ResourceClient
from pylium.base.errors import PyliumError
from pylium.core.hubble.flow import Flow
from pylium.core.hubble.metrics import Handler, parse_handlers
from pylium.core.metrics import Counts, datapath_rows, identity_type, map_pressure
from pylium.model.config import AgentSettings
from pylium.runtime.metrics import MetricsServer, samples, serve
from pylium.runtime.unixhttp import HttpError, Request

log = logging.getLogger(__name__)

POLICY_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "NetworkPolicy")

Totals = Callable[[], Mapping[tuple[int, int], Counts]]


class Sources(Protocol):
    """What the agent collector reads, each call answering for the moment of the scrape."""

    def datapath_totals(self) -> Mapping[tuple[int, int], Counts]: ...

    def endpoints(self) -> int: ...

    def identities(self) -> Sequence[int]: ...

    def policies(self) -> int: ...

    def ip_addresses(self) -> Mapping[str, int]: ...

    def map_usage(self) -> Mapping[str, tuple[int, int]]: ...


class AgentCollector(Collector):
    """``cilium_*`` families built at scrape time from :class:`Sources`; a source that fails
    leaves its families out of that scrape (logged) rather than failing the scrape."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._guard("datapath", self._datapath)
        yield from self._guard("endpoints", self._gauges)
        yield from self._guard("bpf maps", self._pressure)

    def _guard(self, what: str, build: Callable[[], list[Metric]]) -> list[Metric]:
        try:
            return build()
        except (PyliumError, OSError) as err:
            log.warning("metrics: %s not collected: %s", what, err)
            return []

    def _datapath(self) -> list[Metric]:
        rows = datapath_rows(self.sources.datapath_totals())
        drop_count = CounterMetricFamily(
            "cilium_drop_count",
            "Total dropped packets, tagged by drop reason and ingress/egress direction",
            labels=["reason", "direction"],
        )
        drop_bytes = CounterMetricFamily(
            "cilium_drop_bytes",
            "Total dropped bytes, tagged by drop reason and ingress/egress direction",
            labels=["reason", "direction"],
        )
        for (reason, direction), (packets, size) in sorted(rows.drops.items()):
            drop_count.add_metric([reason, direction], packets)
            drop_bytes.add_metric([reason, direction], size)
        fwd_count = CounterMetricFamily(
            "cilium_forward_count",
            "Total forwarded packets, tagged by ingress/egress direction",
            labels=["direction"],
        )
        fwd_bytes = CounterMetricFamily(
            "cilium_forward_bytes",
            "Total forwarded bytes, tagged by ingress/egress direction",
            labels=["direction"],
        )
        for direction, (packets, size) in sorted(rows.forwards.items()):
            fwd_count.add_metric([direction], packets)
            fwd_bytes.add_metric([direction], size)
        return [drop_count, drop_bytes, fwd_count, fwd_bytes]

    def _gauges(self) -> list[Metric]:
        s = self.sources
        endpoint = GaugeMetricFamily(
            "cilium_endpoint", "Number of endpoints managed by this agent", value=s.endpoints()
        )
        identity = GaugeMetricFamily(
            "cilium_identity", "Number of identities currently allocated", labels=["type"]
        )
        by_type: dict[str, int] = {"reserved": 0, "cluster_local": 0, "node_local": 0}
        for ident in s.identities():
            kind = identity_type(ident)
            by_type[kind] = by_type.get(kind, 0) + 1
        for kind, count in sorted(by_type.items()):
            identity.add_metric([kind], count)
        policy = GaugeMetricFamily(
            "cilium_policy", "Number of policies currently loaded", value=s.policies()
        )
        addresses = GaugeMetricFamily(
            "cilium_ip_addresses",
            "Number of allocated IP addresses",
            labels=["family"],
        )
        for family, count in sorted(s.ip_addresses().items()):
            addresses.add_metric([family], count)
        return [endpoint, identity, policy, addresses]

    def _pressure(self) -> list[Metric]:
        family = GaugeMetricFamily(
            "cilium_bpf_map_pressure",
            "Fill percentage of map, tagged by map name",
            labels=["map_name"],
        )
        for name, (entries, max_entries) in sorted(self.sources.map_usage().items()):
            family.add_metric([name], map_pressure(entries, max_entries))
        return [family]


class HubbleMetrics:
    """The ``hubble_*`` counters of the enabled handlers; :meth:`observe` is the observer's
    flow listener."""

    def __init__(self, handlers: Sequence[Handler], registry: CollectorRegistry) -> None:
        self.registry = registry
        self._counters = [
            (
                h,
                Counter(h.metric, h.spec.help, list(h.label_names), registry=registry),
            )
            for h in handlers
        ]

    def observe(self, flows: Sequence[Flow]) -> None:
        for flow in flows:
            for handler, counter in self._counters:
                for row in handler.rows(flow):
                    counter.labels(*row).inc()


class LiveSources:
    """:class:`Sources` from the running agent's parts (given as callables, so that this
    module does not know the agent's classes)."""

    def __init__(
        self,
        *,
        client: ResourceClient,
        metrics_fd: Callable[[], int | None],
        endpoints: Callable[[], int],
        identities: Callable[[], Sequence[int]],
        ip_addresses: Callable[[], Mapping[str, int]],
        pin_dir: Path,
    ) -> None:
        self.client = client
        self._metrics_fd = metrics_fd
        self._endpoints = endpoints
        self._identities = identities
        self._ip_addresses = ip_addresses
        self.pin_dir = pin_dir

    def datapath_totals(self) -> Mapping[tuple[int, int], Counts]:
        fd = self._metrics_fd()
        if fd is None:
            return {}
        return metrics_map.MetricsMap(fd).totals()

    def endpoints(self) -> int:
        return self._endpoints()

    def identities(self) -> Sequence[int]:
        return self._identities()

    def policies(self) -> int:
        return sum(len(self.client.list(kind)[0]) for kind in POLICY_KINDS)

    def ip_addresses(self) -> Mapping[str, int]:
        return self._ip_addresses()

    def map_usage(self) -> Mapping[str, tuple[int, int]]:
        return pressure.pinned_usage(self.pin_dir)


class LostEventsCollector(Collector):
    """``hubble_lost_events_total`` {source}: events the datapath could not hand to the
    observer (its ring buffer was full), as Hubble counts them."""

    def __init__(self, lost: Callable[[], int]) -> None:
        self.lost = lost

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "hubble_lost_events", "Number of lost events", labels=["source"]
        )
        family.add_metric(["perf_event_ring_buffer"], self.lost())
        yield family


@dataclass
class AgentMetrics:
    """The agent's registries (always readable on its API, ``GET /v1/metrics``, as
    ``cilium-dbg metrics list`` reads them) and the servers the settings asked for."""

    registries: list[CollectorRegistry] = field(default_factory=list)
    servers: list[MetricsServer] = field(default_factory=list)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def list_handler(self, request: Request) -> tuple[int, Any]:
        """``GET /v1/metrics[?match=REGEX]``: every sample as ``{name, labels, value}``
        (upstream's ``models.Metric``)."""
        try:
            pattern = re.compile(request.query.get("match", ""))
        except re.error as err:
            raise HttpError(400, f"bad match pattern: {err}") from err
        out = [
            s
            for registry in self.registries
            for s in samples(registry)
            if pattern.search(s["name"])
        ]
        return 200, out


def start(
    settings: AgentSettings,
    sources: Sources,
    add_flow_listener: Callable[[Callable[[Sequence[Flow]], None]], None],
    lost_events: Callable[[], int] | None = None,
) -> AgentMetrics:
    """Build the registries and start the servers the settings ask for (none by default);
    hubble handlers are attached to the flow pipeline when ``hubble-metrics-server`` and
    ``hubble-metrics`` are set."""
    metrics = AgentMetrics()
    registry = CollectorRegistry()
    registry.register(AgentCollector(sources))
    metrics.registries.append(registry)
    server = serve(settings.prometheus_serve_addr, registry, key="prometheus-serve-addr")
    if server is not None:
        metrics.servers.append(server)
    if settings.enable_hubble and settings.hubble_metrics_server and settings.hubble_metrics:
        handlers, problems = parse_handlers(settings.hubble_metrics)
        for problem in problems:
            log.warning("%s", problem)
        registry = CollectorRegistry()
        hubble = HubbleMetrics(handlers, registry)
        if lost_events is not None:
            registry.register(LostEventsCollector(lost_events))
        add_flow_listener(hubble.observe)
        metrics.registries.append(registry)
        server = serve(settings.hubble_metrics_server, registry, key="hubble-metrics-server")
        if server is not None:
            metrics.servers.append(server)
    return metrics
