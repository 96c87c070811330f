"""L2: CIDR identities: the prefixes policy names get node-local identities (scope ``1 << 24``)
with ``cidr:<prefix>`` and ``reserved:world`` labels, as upstream allocates them, so that the
ipcache (longest prefix match) tells the datapath which CIDR selector an outside address falls
under, and CIDR selectors select them by containment (see :class:`~.peers.CIDRSelector`).

Pure: the agent puts the result into its selector cache and its ipcache; the explainer uses
:func:`labels_for_address` to label an address exactly as the datapath's lookup would.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from pylium.core.identity.allocate import lowest_free_local
from pylium.core.policy.peers import CIDRSelector, Direction, peer_selectors, sections
from pylium.model.policy import Rule

WORLD_LABEL = "reserved:world"


def policy_prefixes(rules: Iterable[Rule], cluster_name: str) -> frozenset[ipaddress.IPv4Network]:
    """Every IPv4 prefix a CIDR peer of these rules names, ``except`` prefixes included (an
    address in an excepted block must resolve to the block, not to the outer prefix); /0 is
    left out: it selects the world identities themselves."""
    found: set[ipaddress.IPv4Network] = set()
    for rule in rules:
        for direction in Direction:
            for deny in (False, True):
                for section in sections(rule, direction, deny):
                    for selector in peer_selectors(section, cluster_name):
                        if isinstance(selector, CIDRSelector):
                            found.update(
                                n
                                for n in (selector.cidr, *selector.except_)
                                if isinstance(n, ipaddress.IPv4Network) and n.prefixlen
                            )
    return frozenset(found)


def cidr_labels(prefix: ipaddress.IPv4Network) -> frozenset[str]:
    return frozenset({f"cidr:{prefix}", WORLD_LABEL})


def assign(
    prefixes: Iterable[ipaddress.IPv4Network],
    previous: Mapping[ipaddress.IPv4Network, int],
) -> dict[ipaddress.IPv4Network, int]:
    """Identities for ``prefixes``: a prefix keeps the number it had; new prefixes take the
    lowest free node-local numbers (in prefix order, so the result is deterministic)."""
    wanted = sorted(set(prefixes), key=lambda n: (int(n.network_address), n.prefixlen))
    out = {p: previous[p] for p in wanted if p in previous}
    used = set(out.values())
    for prefix in wanted:
        if prefix not in out:
            out[prefix] = lowest_free_local(used)
            used.add(out[prefix])
    return out


def labels_for_address(
    address: ipaddress.IPv4Address, prefixes: Iterable[ipaddress.IPv4Network]
) -> frozenset[str]:
    """The labels of the identity the datapath finds for an outside address: the longest policy
    prefix holding it, else plain world."""
    holding = [p for p in prefixes if address in p]
    if not holding:
        return frozenset({WORLD_LABEL})
    return cidr_labels(max(holding, key=lambda p: p.prefixlen))
