"""L0: typed numeric and string ids, so that an endpoint id is never passed where an identity
is expected. ``NewType`` costs nothing at run time; mypy keeps them apart."""

from __future__ import annotations

from typing import NewType

IdentityID = NewType("IdentityID", int)
"""A numeric security identity (reserved 1-255, cluster-wide, or node-local with scope bits)."""

EndpointID = NewType("EndpointID", int)
"""An endpoint's id on its node (``cilium-dbg endpoint list``), 1-4095."""

ClusterID = NewType("ClusterID", int)
"""The cluster mesh id, 0 (unset) to 255 (or 511 with ``max-connected-clusters=511``)."""

NodeName = NewType("NodeName", str)
"""A node's name; also its CiliumNode's name."""

PoolName = NewType("PoolName", str)
"""A CiliumPodIPPool's name (multi-pool IPAM); ``default`` for the other modes."""

ServiceID = NewType("ServiceID", int)
"""A load-balancer frontend's id (``cilium-dbg service list``)."""

BackendID = NewType("BackendID", int)
"""A load-balancer backend's id."""

RevNatID = NewType("RevNatID", int)
"""A reverse-NAT index, 16 bits in the datapath."""
