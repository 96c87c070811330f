"""L2: numeric identities as Cilium numbers them (``pkg/identity/numericidentity.go``).

32-bit identities whose top 8 bits are the scope: 0 for reserved and cluster-wide identities,
1 (``1 << 24``) for node-local CIDR/FQDN/CIDR-group identities, 2 (``2 << 24``) for remote
nodes with node labels. Cluster-wide identities of cluster ID 0 are 256-65535; of cluster ID
N > 0, ``N << 16`` to ``((N + 1) << 16) - 1``. With ``max-connected-clusters=511`` the cluster
ID takes 9 bits and the shift is 15.
"""

from __future__ import annotations

import enum

from pylium.base.errors import AllocationError

MIN_CLUSTER_IDENTITY = 256
"""The first cluster-wide identity; 1-255 are reserved."""
USER_RESERVED_MIN = 128
"""``UserReservedNumericIdentity``: 128-255 are left for users."""
WELL_KNOWN = range(100, 116)
"""kube-dns, core-dns, cilium-operator (and EKS variants), with ``wellKnownIdentities``."""
IDENTITY_BITS = 24
SCOPE_MASK = 0xFF << IDENTITY_BITS
CLUSTER_ID_SHIFT = 16
"""The shift for the default ``max-connected-clusters=255``."""
LOCAL_SCOPE = 1 << IDENTITY_BITS
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


class Scope(enum.IntEnum):
    """The top 8 bits of an identity."""

    GLOBAL = 0
    LOCAL = 1 << IDENTITY_BITS
    REMOTE_NODE = 2 << IDENTITY_BITS


def cluster_id_shift(max_connected_clusters: int = 255) -> int:
    """How far the cluster ID is shifted in a cluster-wide identity."""
    if max_connected_clusters == 255:
        return 16
    if max_connected_clusters == 511:
        return 15
    raise AllocationError(
        "identity", f"max-connected-clusters {max_connected_clusters} must be 255 or 511"
    )


def cluster_range(cluster_id: int, *, max_connected_clusters: int = 255) -> range:
    """The cluster-wide identities a cluster allocates from."""
    shift = cluster_id_shift(max_connected_clusters)
    if not 0 <= cluster_id <= max_connected_clusters:
        raise AllocationError(
            "identity", f"cluster-id {cluster_id} is outside 0-{max_connected_clusters}"
        )
    if cluster_id == 0:
        return range(MIN_CLUSTER_IDENTITY, 1 << shift)
    start = cluster_id << shift
    return range(start, start + (1 << shift))


def cluster_id_of(identity: int, *, max_connected_clusters: int = 255) -> int:
    """The cluster a cluster-wide identity belongs to (0 for reserved ones)."""
    return (identity & ~SCOPE_MASK) >> cluster_id_shift(max_connected_clusters)


def local_range() -> range:
    """Node-local identities (CIDR, FQDN, CIDR group): scope 1, numbered from 1."""
    return range(LOCAL_SCOPE + 1, LOCAL_MAX + 1)


def scope_of(identity: int) -> Scope:
    try:
        return Scope(identity & SCOPE_MASK)
    except ValueError:
        raise AllocationError(str(identity), "identity has an unknown scope") from None


def is_reserved(identity: int) -> bool:
    return 0 < identity < MIN_CLUSTER_IDENTITY


def is_local(identity: int) -> bool:
    """Node-local (CIDR, FQDN) identities: scope bit 24."""
    return identity & SCOPE_MASK == Scope.LOCAL
