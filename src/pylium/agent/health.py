"""L5: the agent's cilium-health daemon: the ``:4240`` responder on the node's address and a
prober that checks every node of the cluster (ICMP echo and ``HTTP GET /hello``) once per probe
interval, new nodes at once.

Results are served on the agent API (``GET /v1/health``: upstream's ``GET /v1beta/status`` on
``health.sock``; ``PUT /v1/health/probe``: ``PUT /v1beta/status/probe``, a synchronous round)
and published to the store under ``nodes/health/<node>``, bound to the agent's heartbeat lease,
so that ``pylium status`` shows the cluster's health and a dead agent's report disappears with
it. The bookkeeping is :mod:`pylium.core.health`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pylium.adapters import health as probes
from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.api import Store
from pylium.base.errors import PyliumError
from pylium.core.health import HealthBook, HealthReport, Target, probe_interval
from pylium.runtime.nodekeys import HEALTH_PREFIX
from pylium.runtime.unixhttp import HttpError, Request

log = logging.getLogger(__name__)

TARGETS_EVERY = 2.0
"""Seconds between two reads of the node list (new nodes are probed at the next read)."""
ICMP_DEADLINE = 10.0
"""Upstream's ICMP deadline (any reply within it counts)."""
HTTP_TIMEOUT = 5.0
"""A refused connection fails at once; this only bounds a host that does not answer."""


def targets_from(cilium_nodes: Iterable[Mapping[str, Any]]) -> list[Target]:
    """Each CiliumNode's first InternalIP (``spec.addresses``)."""
    out = []
    for body in cilium_nodes:
        name = str((body.get("metadata") or {}).get("name", ""))
        for address in (body.get("spec") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP" and address.get("ip"):
                out.append(Target(name, str(address["ip"])))
                break
    return sorted(out, key=lambda t: t.name)


class HealthDaemon:
    def __init__(
        self,
        *,
        node: str,
        address: str,
        store: Store,
        lease: Callable[[], int],
        port: int = probes.HEALTH_PORT,
        enabled: bool = True,
    ) -> None:
        self.node = node
        self.address = address
        self.store = store
        self.client = ResourceClient(store)
        self.lease = lease
        self.port = port
        self.enabled = enabled
        self.book = HealthBook(local=node)
        self.responder = probes.HealthResponder(address, port)
        self.error = ""
        """Why the daemon is not healthy (responder not listening, prober failing)."""
        self._lock = threading.Lock()
        self._round_lock = threading.Lock()
        self._targets: list[Target] = []
        self._probed = datetime.now(UTC)
        """Wall time of the last probe (the report's timestamp, as upstream's)."""
        self._thread: threading.Thread | None = None
        self._published_lease = 0

    @property
    def state(self) -> str:
        """``Ok``, ``Disabled`` or ``Failure`` (the ``Cilium health daemon:`` line)."""
        if not self.enabled:
            return "Disabled"
        return "Failure" if self.error else "Ok"

    def start(self, stop: threading.Event) -> None:
        if not self.enabled:
            return
        try:
            self.responder.start()
        except PyliumError as err:
            self.error = str(err)
            log.error("%s", err)
        self._thread = threading.Thread(target=self._run, args=(stop,), name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.responder.stop()
        if self._thread is not None:
            self._thread.join(timeout=1)  # a daemon thread: a probe in flight dies with us

    def interval(self) -> float:
        return probe_interval(len(self._targets))

    def _run(self, stop: threading.Event) -> None:
        last_targets = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() - last_targets >= TARGETS_EVERY:
                    self._targets = targets_from(
                        [r.body for r in self.client.list("CiliumNode")[0]]
                    )
                    last_targets = time.monotonic()
                with self._lock:
                    due = self.book.due(self._targets, time.monotonic(), self.interval())
                if due:
                    self.probe(due, full=len(due) == len(self._targets))
                elif self.lease() != self._published_lease and self.book.results:
                    self._publish(self.report())  # a new lease: the old key went with the old
                if self.responder.listening:
                    self.error = ""
            except PyliumError as err:
                self.error = f"health prober: {err}"
                log.warning("%s", self.error)
            stop.wait(1.0)

    def probe(self, targets: list[Target] | None = None, *, full: bool = True) -> HealthReport:
        """Probe ``targets`` (default: every known node) now, in parallel; publish the report."""
        with self._round_lock:
            if targets is None:
                self._targets = targets_from([r.body for r in self.client.list("CiliumNode")[0]])
                targets = self._targets
            with ThreadPoolExecutor(max_workers=max(1, min(16, 2 * len(targets)))) as pool:
                icmp = [
                    pool.submit(probes.icmp_probe, t.ip, timeout=ICMP_DEADLINE) for t in targets
                ]
                http = [
                    pool.submit(probes.http_probe, t.ip, self.port, timeout=HTTP_TIMEOUT)
                    for t in targets
                ]
                now = time.monotonic()
                self._probed = datetime.now(UTC)
                with self._lock:
                    for target, i, h in zip(targets, icmp, http, strict=True):
                        self.book.record(target, i.result(), h.result(), now)
            with self._lock:
                self.book.finish_round(self._targets, time.monotonic(), full=full)
            report = self.report()
            self._publish(report)
            return report

    def report(self) -> HealthReport:
        with self._lock:
            return self.book.report(timestamp=self._probed, interval=self.interval())

    def _publish(self, report: HealthReport) -> None:
        lease = self.lease()
        if not lease:
            return
        try:
            self.store.put(
                HEALTH_PREFIX + self.node, json.dumps(report.to_json()).encode(), lease=lease
            )
            self._published_lease = lease
        except PyliumError as err:  # an expired lease: the next round publishes again
            log.warning("could not publish the health report: %s", err)

    def status_handler(self, request: Request) -> tuple[int, Any]:
        """``GET /v1/health``: the cached results."""
        if not self.enabled:
            raise HttpError(404, "health checking is disabled (enable-health-checking=false)")
        return 200, self.report().to_json()

    def probe_handler(self, request: Request) -> tuple[int, Any]:
        """``PUT /v1/health/probe``: probe every node now and answer with the results."""
        if not self.enabled:
            raise HttpError(404, "health checking is disabled (enable-health-checking=false)")
        return 200, self.probe().to_json()
