"""L3: Hubble's Observer gRPC service over a flow source: the agent serves its own ring on
:4244 and a unix socket (``hubble-listen-address``, ``hubble-socket-path``); the relay serves
the merge of every node on :4245. gRPC reflection is on, so ``grpcurl`` lists the service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_reflection.v1alpha import reflection

from pylium.adapters.hubbleapi import convert, flow_pb, observer_grpc, observer_pb
from pylium.core.hubble.flow import Flow
from pylium.core.hubble.ring import Query

FOLLOW_POLL = 1.0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    address: str
    connected: bool
    num_flows: int = 0
    max_flows: int = 0
    seen_flows: int = 0
    uptime_ns: int = 0


class FlowSource(Protocol):
    """Where the flows come from: one ring (an agent) or every node (the relay)."""

    def read(self, query: Query) -> tuple[list[Flow], Any]: ...

    def after(self, query: Query, cursor: Any, timeout: float) -> tuple[list[Flow], Any]: ...

    def status(self) -> dict[str, Any]: ...

    def nodes(self) -> list[NodeInfo]: ...


def query_from_request(request: Any) -> Query:
    return Query(
        number=request.number,
        first=request.first,
        since_ns=request.since.ToNanoseconds() if request.HasField("since") else 0,
        until_ns=request.until.ToNanoseconds() if request.HasField("until") else 0,
        allow=tuple(convert.filter_from_pb(f) for f in request.whitelist),
        deny=tuple(convert.filter_from_pb(f) for f in request.blacklist),
    )


def _response(flow: Flow) -> Any:
    msg = observer_pb().GetFlowsResponse(flow=convert.to_pb(flow), node_name=flow.node_name)
    msg.time.FromNanoseconds(flow.time_ns)
    return msg


def _lost(count: int) -> Any:
    event = flow_pb().LostEvent(source=1, num_events_lost=count)  # PERF_EVENT_RING_BUFFER
    msg = observer_pb().GetFlowsResponse(lost_events=event)
    msg.time.GetCurrentTime()
    return msg


def make_servicer(source: FlowSource, version: str) -> Any:
    base = observer_grpc().ObserverServicer

    class Observer(base):  # type: ignore[misc, valid-type]
        def GetFlows(self, request: Any, context: Any) -> Iterator[Any]:
            query = query_from_request(request)
            flows, cursor = source.read(query)
            if request.follow and not request.number and not query.since_ns:
                flows = []  # following from now on (Hubble's semantics): no history
            for flow in flows:
                yield _response(flow)
            if not request.follow:
                return
            live = Query(allow=query.allow, deny=query.deny, until_ns=query.until_ns)
            lost = int(source.status().get("lost_events", 0))
            while context.is_active():
                flows, cursor = source.after(live, cursor, FOLLOW_POLL)
                for flow in flows:
                    yield _response(flow)
                now_lost = int(source.status().get("lost_events", 0))
                if now_lost > lost:
                    # The datapath's ring buffer overflowed (the reader fell behind): say so,
                    # as Hubble does, instead of silently missing flows.
                    yield _lost(now_lost - lost)
                    lost = now_lost

        def ServerStatus(self, request: Any, context: Any) -> Any:
            s = source.status()
            msg = observer_pb().ServerStatusResponse(
                num_flows=s["num_flows"],
                max_flows=s["max_flows"],
                seen_flows=s["seen_flows"],
                uptime_ns=s["uptime_ns"],
                unavailable_nodes=s.get("unavailable_nodes", []),
                version=version,
                lost_events=int(s.get("lost_events", 0)),
            )
            msg.num_connected_nodes.value = s.get("num_connected_nodes", 1)
            msg.num_unavailable_nodes.value = len(s.get("unavailable_nodes", []))
            return msg

        def GetNodes(self, request: Any, context: Any) -> Any:
            pb = observer_pb()
            return pb.GetNodesResponse(
                nodes=[
                    pb.Node(
                        name=n.name,
                        version=version,
                        address=n.address,
                        state=1 if n.connected else 2,
                        uptime_ns=n.uptime_ns,
                        num_flows=n.num_flows,
                        max_flows=n.max_flows,
                        seen_flows=n.seen_flows,
                    )
                    for n in source.nodes()
                ]
            )

    return Observer()


class ObserverServer:
    """A gRPC server for the Observer service on the given addresses (``host:port`` or
    ``unix:/path``); ``stop`` ends streams and frees the ports."""

    def __init__(self, source: FlowSource, addresses: list[str], *, version: str) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        observer_grpc().add_ObserverServicer_to_server(make_servicer(source, version), self._server)
        reflection.enable_server_reflection(
            ("observer.Observer", reflection.SERVICE_NAME), self._server
        )
        self.ports: list[int] = []
        for address in addresses:
            port = self._server.add_insecure_port(address)
            if port == 0 and not address.startswith("unix:"):
                raise OSError(f"cannot listen on {address}")
            self.ports.append(port)

    def start(self) -> ObserverServer:
        self._server.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait(grace + 1)


class RingSource:
    """A flow source over one node's ring (what the agent serves)."""

    def __init__(
        self,
        node: str,
        address: str,
        read: Callable[[Query], tuple[list[Flow], int]],
        after: Callable[[Query, int, float], tuple[list[Flow], int]],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.node, self.address = node, address
        self._read, self._after, self._status = read, after, status

    def read(self, query: Query) -> tuple[list[Flow], Any]:
        return self._read(query)

    def after(self, query: Query, cursor: Any, timeout: float) -> tuple[list[Flow], Any]:
        return self._after(query, int(cursor), timeout)

    def status(self) -> dict[str, Any]:
        return self._status()

    def nodes(self) -> list[NodeInfo]:
        s = self._status()
        return [
            NodeInfo(
                name=self.node,
                address=self.address,
                connected=True,
                num_flows=s["num_flows"],
                max_flows=s["max_flows"],
                seen_flows=s["seen_flows"],
                uptime_ns=s["uptime_ns"],
            )
        ]


def wait_ready(channel: grpc.Channel, timeout: float = 5.0) -> None:
    grpc.channel_ready_future(channel).result(timeout=timeout)
