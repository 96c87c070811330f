"""L5: the operator's Prometheus metrics on ``operator-prometheus-serve-addr`` (:9963, Helm
``operator.prometheus.enabled``), built from the store at each scrape:
``cilium_operator_ipam_ips`` {type: available, used} over every CiliumNode,
``cilium_operator_ipam_nodes`` {category: total}, and ``cilium_operator_is_leader`` (pylium:
whether this replica leads; upstream exposes leader election through client-go's metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pylium.adapters.resources import ResourceClient
from pylium.base.errors import PyliumError
from pylium.core.metrics import ipam_ips
from pylium.model.config import OperatorSettings
from pylium.runtime.metrics import MetricsServer, serve

log = logging.getLogger(__name__)


class OperatorCollector(Collector):
    def __init__(self, client: ResourceClient, is_leader: Callable[[], bool]) -> None:
        self.client = client
        self.is_leader = is_leader

    def collect(self) -> Iterator[Metric]:
        leader = GaugeMetricFamily(
            "cilium_operator_is_leader",
            "1 when this operator replica holds the leader lease",
            value=1 if self.is_leader() else 0,
        )
        yield leader
        try:
            nodes = [r.body for r in self.client.list("CiliumNode")[0]]
        except PyliumError as err:
            log.warning("metrics: CiliumNodes not listed: %s", err)
            return
        ips = GaugeMetricFamily(
            "cilium_operator_ipam_ips", "Number of IPs allocated", labels=["type"]
        )
        for kind, value in sorted(ipam_ips(nodes).items()):
            ips.add_metric([kind], value)
        by_category = GaugeMetricFamily(
            "cilium_operator_ipam_nodes", "Number of nodes by category", labels=["category"]
        )
        by_category.add_metric(["total"], len(nodes))
        yield ips
        yield by_category


def start(
    settings: OperatorSettings,
    client: ResourceClient,
    is_leader: Callable[[], bool],
    *,
    extra: Sequence[Collector] = (),
) -> MetricsServer | None:
    """Serve the operator's metrics, plus ``extra`` collectors (the ENI allocator's
    ``cilium_operator_ec2_api_*`` and ``cilium_operator_ipam_*_ops``)."""
    if not settings.operator_prometheus_serve_addr:
        return None
    registry = CollectorRegistry()
    registry.register(OperatorCollector(client, is_leader))
    for collector in extra:
        registry.register(collector)
    return serve(
        settings.operator_prometheus_serve_addr, registry, key="operator-prometheus-serve-addr"
    )
