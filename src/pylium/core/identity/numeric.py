"""L2: numeric identities as Cilium numbers them (``pkg/identity/numericidentity.go``).

32-bit identities whose top 8 bits are the scope: 0 for reserved and cluster-wide identities,
1 (``1 << 24``) for node-local CIDR/FQDN identities. Cluster-wide identities of cluster ID 0
are 256-65535; of cluster ID N > 0, ``N << 16`` to ``(N + 1) << 16 - 1``.
"""

from __future__ import annotations

import enum

from pylium.base.errors import AllocationError

CLUSTER_ID_SHIFT = 16
MIN_CLUSTER_IDENTITY = 256
LOCAL_SCOPE = 1 << 24
LOCAL_MAX = LOCAL_SCOPE | 0xFFFFFF


class ReservedIdentity(enum.IntEnum):
    UNKNOWN = 0
    HOST = 1
    WORLD = 2
    UNMANAGED = 3
    HEALTH = 4
    INIT = 5
    REMOTE_NODE = 6
    KUBE_APISERVER = 7
    INGRESS = 8
    WORLD_IPV4 = 9
    WORLD_IPV6 = 10

    @property
    def label(self) -> str:
        """The reserved label, e.g. ``reserved:remote-node``."""
        return "reserved:" + self.name.lower().replace("_", "-")


def cluster_range(cluster_id: int) -> range:
    """The cluster-wide identities a cluster allocates from."""
    if not 0 <= cluster_id <= 255:
        raise AllocationError("identity", f"cluster-id {cluster_id} is outside 0-255")
    if cluster_id == 0:
        return range(MIN_CLUSTER_IDENTITY, 1 << CLUSTER_ID_SHIFT)
    start = cluster_id << CLUSTER_ID_SHIFT
    return range(start, start + (1 << CLUSTER_ID_SHIFT))


def is_reserved(identity: int) -> bool:
    return 0 < identity < MIN_CLUSTER_IDENTITY


def is_local(identity: int) -> bool:
    """Node-local (CIDR, FQDN) identities: scope bit 24."""
    return identity >> 24 == 1
