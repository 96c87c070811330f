"""L3: a client of Hubble's Observer service (an agent's :4244 or the relay's :4245)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from pylium.adapters.hubbleapi import convert, observer_grpc, observer_pb
from pylium.base.errors import PyliumError
from pylium.core.hubble.filters import FlowFilter
from pylium.core.hubble.flow import Flow


class ObserverError(PyliumError):
    def __init__(self, target: str, detail: str) -> None:
        super().__init__(f"hubble server {target}: {detail}")


class ObserverClient:
    def __init__(self, target: str, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._stub = observer_grpc().ObserverStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ObserverClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flows(
        self,
        *,
        number: int = 0,
        first: bool = False,
        follow: bool = False,
        allow: Sequence[FlowFilter] = (),
        deny: Sequence[FlowFilter] = (),
        since_ns: int = 0,
        until_ns: int = 0,
        deadline: float | None = None,
        on_lost: Callable[[int], None] | None = None,
    ) -> Iterator[Flow]:
        """Flows as the server streams them; with ``follow``, until ``deadline`` seconds have
        passed (then the stream just ends) or forever."""
        request = observer_pb().GetFlowsRequest(
            number=number,
            first=first,
            follow=follow,
            whitelist=[convert.filter_to_pb(f) for f in allow],
            blacklist=[convert.filter_to_pb(f) for f in deny],
        )
        if since_ns:
            request.since.FromNanoseconds(since_ns)
        if until_ns:
            request.until.FromNanoseconds(until_ns)
        timeout = (deadline if deadline else None) if follow else self.timeout
        try:
            for response in self._stub.GetFlows(request, timeout=timeout):
                kind = response.WhichOneof("response_types")
                if kind == "flow":
                    yield convert.from_pb(response.flow)
                elif kind == "lost_events" and on_lost is not None:
                    on_lost(response.lost_events.num_events_lost)
        except grpc.RpcError as err:
            if follow and deadline and err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return
            raise ObserverError(self.target, f"{err.code().name}: {err.details()}") from err

    def status(self) -> Any:
        try:
            return self._stub.ServerStatus(
                observer_pb().ServerStatusRequest(), timeout=self.timeout
            )
        except grpc.RpcError as err:
            raise ObserverError(self.target, f"{err.code().name}: {err.details()}") from err

    def nodes(self) -> Any:
        try:
            return self._stub.GetNodes(observer_pb().GetNodesRequest(), timeout=self.timeout).nodes
        except grpc.RpcError as err:
            raise ObserverError(self.target, f"{err.code().name}: {err.details()}") from err
