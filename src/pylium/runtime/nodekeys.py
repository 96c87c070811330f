"""L4: where per-node and per-operator state lives in the store, shared by the daemons that
write it (agent, operator) and those that read or clean it up (operator, CLI, lab).

Per node ``N``: ``nodes/heartbeat/N`` and ``nodes/health/N`` (bound to the agent's lease),
``ipam/N/<ip>`` (IP allocations), ``endpoints/N/<container>`` (endpoint records) and
``identities/refs/<id>/N`` (identity references, :mod:`pylium.adapters.identities`).
Per operator replica: ``operator/instances/<identity>`` (bound to its election lease), the
leader's ``operator/leader``, and ``operator/replicas`` (how many should run: the Helm value
``operator.replicas``, the Deployment's desired count).
"""

from __future__ import annotations

HEARTBEAT_PREFIX = "nodes/heartbeat/"
HEALTH_PREFIX = "nodes/health/"
"""Each agent's last health report (value: HealthStatusResponse JSON)."""
ALLOCATIONS_PREFIX = "ipam/"
RECORDS_PREFIX = "endpoints/"

OPERATOR_LEADER_KEY = "operator/leader"
OPERATOR_INSTANCES_PREFIX = "operator/instances/"
OPERATOR_REPLICAS_KEY = "operator/replicas"


def node_prefixes(node: str) -> tuple[str, ...]:
    """The key prefixes holding state of ``node`` alone (not lease-bound)."""
    return (f"{ALLOCATIONS_PREFIX}{node}/", f"{RECORDS_PREFIX}{node}/")
