"""L3: Hubble's gRPC Observer API (``observer.proto``/``flow.proto``, the subset pylium serves,
with Hubble's package, message and field names and numbers): the protobuf messages and service
stubs compiled from the ``.proto`` files here when first used (grpcio-tools, no generated code
in the tree), conversions to and from the core's flows and filters, the server an agent or the
relay runs, and a client."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import grpc


@functools.cache
def _load() -> tuple[ModuleType, ModuleType, ModuleType]:
    protos, services = grpc.protos_and_services("pylium/adapters/hubbleapi/observer.proto")
    flow = grpc.protos("pylium/adapters/hubbleapi/flow.proto")
    return flow, protos, services


def flow_pb() -> Any:
    """The ``flow`` package's messages (``Flow``, ``FlowFilter``, ...)."""
    return _load()[0]


def observer_pb() -> Any:
    """The ``observer`` package's messages (``GetFlowsRequest``, ...)."""
    return _load()[1]


def observer_grpc() -> Any:
    """``ObserverServicer``, ``ObserverStub``, ``add_ObserverServicer_to_server``."""
    return _load()[2]
