"""L5: the agent's Hubble observer: drains the datapath's event ring buffer into flows (with
endpoints, identities and the policies that decided), keeps the last N in the flow ring, and
serves them on the agent API (``GET /v1/flows``, a long poll for following;
``GET /v1/hubble/status``).

The ring buffer has one reader: this thread. Events the datapath could not queue (the buffer
was full) are counted by the datapath and reported here as lost, as Hubble reports them.

Per event the reader does almost nothing: a drained batch stays raw bytes
(:class:`RecordFlows`) and each record becomes a :class:`Flow` only when something reads it
(the API, gRPC, the relay, metrics). What could change before then is captured per batch:
the endpoints and the identities' labels of the addresses and identities the batch names
(whole-batch byte slices, a lookup per distinct one), and, for drops and policy verdicts
only, the policies that decided (policy can change at any time).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from pylium import __version__
from pylium.adapters.bpf.objects import BpfObject
from pylium.adapters.hubbleapi.server import ObserverServer, RingSource
from pylium.adapters.maps import events
from pylium.adapters.resources import ResourceClient
from pylium.base.errors import PyliumError
from pylium.core.hubble.filters import FlowFilter, filter_from_json
from pylium.core.hubble.flow import (
    EVENT_DROP,
    EVENT_POLICY_VERDICT,
    EVENT_TRACE,
    Decided,
    Endpoint,
    EventFields,
    Flow,
    flow_from_event,
)
from pylium.core.hubble.ring import FlowRing, Query
from pylium.core.policy.peers import Direction
from pylium.runtime.unixhttp import Request, bad_field

log = logging.getLogger(__name__)

DIR_EGRESS = 2
"""The datapath's direction numbers (bpf/lib/common.h): 1 ingress, 2 egress."""

Attribution = Callable[[int, Direction, int, int, int], Decided]
LabelsOf = Callable[[int], frozenset[str] | None]
FlowListener = Callable[[Sequence[Flow]], None]


BATCH_EVENTS = 256
BATCH_PAUSE_S = 0.05
"""Below ``BATCH_EVENTS`` events per read, the reader pauses this long before the next one
(flows reach the ring at most this much later; the BPF ring buffer holds far more)."""


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What turning a batch's records into flows later takes from the moment it was read."""

    node: str
    boot_offset_ns: int
    endpoints: Mapping[ipaddress.IPv4Address, Endpoint]
    """Of every address the batch names that was a known endpoint (not the whole table: the
    ring would keep one table per batch alive)."""
    labels: Mapping[int, frozenset[str] | None]
    """Of every identity the batch names (identities can be released)."""
    decided: Mapping[int, Decided]
    """Record index -> the policies that decided (drops and verdicts that have any)."""

    def lookup(self, ip: ipaddress.IPv4Address, identity: int) -> Endpoint:
        found = self.endpoints.get(ip)
        if found is not None:
            return found
        return Endpoint(identity=identity, labels=tuple(sorted(self.labels.get(identity) or ())))


class RecordFlows(Sequence[Flow]):
    """One drained batch as flows, each record decoded when first read, then kept."""

    def __init__(self, records: events.Records, context: BatchContext) -> None:
        self._records = records
        self._context = context
        self._count = len(records)
        self._flows: list[Flow | None] = [None] * self._count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Flow: ...

    @overload
    def __getitem__(self, index: slice) -> list[Flow]: ...

    def __getitem__(self, index: int | slice) -> Flow | list[Flow]:
        if isinstance(index, slice):
            return [self._flow(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self._flow(index)

    def __iter__(self) -> Iterator[Flow]:
        return (self._flow(i) for i in range(self._count))

    def _flow(self, index: int) -> Flow:
        flow = self._flows[index]
        if flow is None:
            ctx = self._context
            decided = ctx.decided.get(index)
            flow = self._flows[index] = flow_from_event(
                self._records.event(index),
                node=ctx.node,
                boot_offset_ns=ctx.boot_offset_ns,
                lookup=ctx.lookup,
                attribution=None if decided is None else lambda _: decided,
            )
        return flow


class HubbleObserver:
    def __init__(
        self,
        *,
        node: str,
        cluster: str,
        capacity: int,
        attribution: Attribution,
        labels_of: LabelsOf,
    ) -> None:
        self.node = node
        self.cluster = cluster
        self.ring = FlowRing(capacity)
        self.attribution = attribution
        self.labels_of = labels_of
        self.started = time.time()
        self._endpoints: dict[ipaddress.IPv4Address, Endpoint] = {}
        self._local: dict[ipaddress.IPv4Address, int] = {}
        self._reader: events.EventReader | None = None
        self._lost_fd = -1
        self._lost_seen = 0
        self._offset = time.time_ns() - time.monotonic_ns()
        self._thread: threading.Thread | None = None
        self.listeners: list[FlowListener] = []
        """Called with every batch of new flows, on the reader thread (Hubble metrics)."""
        self._server: ObserverServer | None = None

    # -- inputs -----------------------------------------------------------------------------

    def attach(self, obj: BpfObject, stop: threading.Event) -> None:
        """The datapath is loaded: start draining its events."""
        self._reader = events.EventReader(obj.map_fd(events.NAME))
        self._lost_fd = obj.map_fd(events.LOST_NAME)
        self._lost_seen = events.lost(self._lost_fd)  # earlier losses are not this run's
        self._thread = threading.Thread(target=self._run, args=(stop,), name="hubble", daemon=True)
        self._thread.start()

    def refresh(self, client: ResourceClient, local: dict[ipaddress.IPv4Address, int]) -> None:
        """Endpoints of every node (CiliumEndpoints), and which addresses are local (ID)."""
        known: dict[ipaddress.IPv4Address, Endpoint] = {}
        for cep in client.list("CiliumEndpoint")[0]:
            status = cep.body.get("status") or {}
            identity = status.get("identity") or {}
            for addressing in (status.get("networking") or {}).get("addressing") or []:
                if addressing.get("ipv4"):
                    known[ipaddress.IPv4Address(addressing["ipv4"])] = Endpoint(
                        identity=int(identity.get("id", 0)),
                        labels=tuple(sorted(identity.get("labels") or ())),
                        id=int(status.get("id", 0)),
                        namespace=cep.namespace,
                        pod_name=cep.name,
                        cluster_name=self.cluster,
                    )
        self._endpoints, self._local = known, dict(local)

    def _attribute(self, event: EventFields) -> Decided:
        if event.direction == DIR_EGRESS:
            local, remote = self._local.get(event.saddr), event.dst_identity
            direction = Direction.EGRESS
        else:
            local, remote = self._local.get(event.daddr), event.src_identity
            direction = Direction.INGRESS
        if local is None:
            return (), ()
        return self.attribution(local, direction, remote, event.proto, event.dport)

    def take(self, records: events.Records) -> None:
        """A drained batch into the ring (and to the listeners, which decode it at once)."""
        flows = RecordFlows(records, self._context(records))
        self.ring.add(flows)
        if self.listeners:
            self._notify(flows)

    def _context(self, records: events.Records) -> BatchContext:
        endpoints = self._endpoints
        decided: dict[int, Decided] = {}
        types = records.types()
        if types.count(EVENT_TRACE) != len(types):  # drops and verdicts: attributed now
            for i, kind in enumerate(types):
                if kind in (EVENT_DROP, EVENT_POLICY_VERDICT):
                    refs = self._attribute(records.event(i))
                    if refs != ((), ()):
                        decided[i] = refs
        return BatchContext(
            node=self.node,
            boot_offset_ns=self._offset,
            endpoints={
                ip: endpoint
                for ip in records.addresses()
                if (endpoint := endpoints.get(ip)) is not None
            },
            labels={i: self.labels_of(i) for i in records.identities()},
            decided=decided,
        )

    def _run(self, stop: threading.Event) -> None:
        assert self._reader is not None
        while not stop.is_set():
            try:
                records = self._reader.drain()
                if not records:
                    self._reader.wait(100)
                    records = self._reader.drain()
                if records:
                    self.take(records)
                    if len(records) < BATCH_EVENTS:
                        # Let events gather: one wake-up per batch instead of one per event
                        # keeps the reader off the CPUs that carry the traffic.
                        stop.wait(BATCH_PAUSE_S)
                lost = events.lost(self._lost_fd)
                if lost > self._lost_seen:
                    self.ring.add_lost(lost - self._lost_seen)
                    self._lost_seen = lost
            except PyliumError as err:
                log.warning("hubble: reading events failed: %s", err)
                stop.wait(1.0)
        self._reader.close()

    def _notify(self, flows: Sequence[Flow]) -> None:
        for listener in self.listeners:
            try:
                listener(flows)
            except Exception:  # a listener's bug must not stop the flow pipeline
                log.exception("hubble: flow listener failed")

    # -- API --------------------------------------------------------------------------------

    def flows_handler(self, request: Request) -> tuple[int, Any]:
        """``GET /v1/flows?number=&first=&since=&until=&allow=&deny=`` (filters: JSON lists of
        Hubble FlowFilters) for the ring's flows; with ``after=SEQ[&wait=SECONDS]`` only flows
        newer than SEQ, waiting for them (``pylium observe --follow``)."""
        q = request.query

        def number(name: str) -> int:
            text = q.get(name, "0")
            if not (text.isascii() and text.isdecimal() and len(text) <= 20):
                raise bad_field(f"query.{name}", f"{text!r} is not a non-negative integer")
            return int(text)

        def filters(name: str) -> tuple[FlowFilter, ...]:
            try:
                given = json.loads(q.get(name, "[]"))
                if not isinstance(given, list):
                    raise TypeError("not a JSON list of FlowFilters")
                return tuple(filter_from_json(f) for f in given)
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
                raise bad_field(f"query.{name}", f"bad flow filter: {err}") from err

        query = Query(
            number=number("number"),
            first=q.get("first", "") in ("1", "true"),
            since_ns=number("since"),
            until_ns=number("until"),
            allow=filters("allow"),
            deny=filters("deny"),
        )
        try:
            wait = float(q.get("wait", "0"))
        except ValueError as err:
            raise bad_field("query.wait", f"{q['wait']!r} is not a number of seconds") from err
        if not 0 <= wait <= 30:  # NaN too
            raise bad_field("query.wait", f"{wait} is not between 0 and 30 seconds")
        if "after" in q:
            flows, seq = self.ring.after(query, number("after"), wait)
        else:
            flows, seq = self.ring.read(query)
        return 200, {"flows": [f.to_json() for f in flows], "seq": seq, **self._status()}

    def _status(self) -> dict[str, Any]:
        return {
            "num_flows": len(self.ring),
            "max_flows": self.ring.capacity,
            "seen_flows": self.ring.seen,
            "lost_events": self.ring.lost,
            "uptime_ns": int((time.time() - self.started) * 1e9),
            "node": self.node,
        }

    def status_handler(self, request: Request) -> tuple[int, Any]:
        return 200, self._status()

    # -- gRPC -------------------------------------------------------------------------------

    def serve(self, listen: str, socket_path: Path, address: str) -> None:
        """Hubble's Observer API on ``listen`` (``hubble-listen-address``, ``:4244``) and the
        unix socket; ``address`` is what GetNodes reports (the node's IP and port)."""
        host, _, port = listen.rpartition(":")
        source = RingSource(self.node, address, self.ring.read, self.ring.after, self._status)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        socket_path.unlink(missing_ok=True)
        try:
            self._server = ObserverServer(
                source, [f"{host or '0.0.0.0'}:{port}", f"unix:{socket_path}"], version=__version__
            ).start()
        except (OSError, RuntimeError) as err:
            # Flows stay available on the agent API; only the gRPC endpoint is missing.
            log.error("hubble server could not listen on %s: %s", listen, err)
            return
        log.info("hubble server listening", extra={"address": listen, "socket": str(socket_path)})

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
