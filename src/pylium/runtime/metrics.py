"""L4: a Prometheus endpoint (``/metrics``) on a TCP address, as upstream's
``prometheus-serve-addr`` (agent, :9962), ``operator-prometheus-serve-addr`` (:9963) and
``hubble-metrics-server`` (:9965) serve theirs; each server has its own registry, so only the
families given to it appear (no Python process collectors mixed in).
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from pylium.base.errors import ConfigError

log = logging.getLogger(__name__)


def parse_address(address: str, key: str) -> tuple[str, int]:
    """``":9962"``, ``"0.0.0.0:9962"``, ``"[::]:9962"``, ``"10.0.0.1:9962"`` -> (host, port);
    an empty host means every address (0.0.0.0)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"{address!r}: give [host]:port, e.g. :9962")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


class MetricsServer:
    """Serves ``registry`` on ``address`` from a daemon thread until :meth:`stop`."""

    def __init__(self, address: str, registry: CollectorRegistry, *, key: str) -> None:
        self.host, self.port = parse_address(address, key)
        self.key = key
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        self._server, self._thread = start_http_server(
            self.port, addr=self.host, registry=self.registry
        )
        log.info("%s: serving metrics on %s:%d", self.key, self.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def samples(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """Every sample of ``registry`` now, as upstream's API ``Metric`` ({name, labels, value});
    ``_created`` timestamps are left out."""
    out: list[dict[str, Any]] = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.append({"name": sample.name, "labels": dict(sample.labels), "value": sample.value})
    return out


def serve(address: str, registry: CollectorRegistry, *, key: str) -> MetricsServer | None:
    """Start a server when ``address`` is set; a failure to bind is logged, not fatal (the
    daemon's real work goes on without its metrics)."""
    if not address:
        return None
    try:
        return MetricsServer(address, registry, key=key).start()
    except (OSError, ConfigError) as err:
        log.error("%s: metrics not served on %s: %s", key, address, err)
        return None
