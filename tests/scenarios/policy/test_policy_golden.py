"""Golden policy scenarios: input YAML (policies, identities, endpoints, queries, configs) ->
expected enforcement, map entries and verdict explanations, through the pure core only.

Each ``<name>.yaml`` here has a ``<name>.golden`` next to it. To regenerate after an intended
change, run with ``PYLIUM_UPDATE_GOLDEN=1`` and review the diff. Every query's explanation
must also agree with the map state's lookup, so a golden file cannot record a disagreement.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from pylium.core.policy.explain import Verdict, explain_identity
from pylium.core.policy.mapstate import compute_map_state
from pylium.core.policy.peers import PROTO_NUMBERS, Direction
from pylium.core.policy.repository import load_objects
from pylium.core.policy.resolve import EnforcementMode, PolicyConfig, Subject
from pylium.core.policy.selectorcache import SelectorCache
from pylium.model import codec
from pylium.model.policy import Protocol

HERE = Path(__file__).parent
SCENARIOS = sorted(HERE.glob("*.yaml"))
UPDATE = os.environ.get("PYLIUM_UPDATE_GOLDEN") == "1"


def config_of(raw: dict[str, Any]) -> PolicyConfig:
    """Cilium's Helm names: policyEnforcementMode, policyAuditMode, hostFirewall, ..."""
    return PolicyConfig(
        mode=EnforcementMode(raw.get("policyEnforcementMode", "default")),
        audit=bool(raw.get("policyAuditMode", False)),
        host_firewall=bool(raw.get("hostFirewall", False)),
        allow_localhost=raw.get("allowLocalhost", "auto") != "policy",
        cluster_name=str(raw.get("clusterName", "default")),
    )


def parse_port(text: str) -> tuple[int, int]:
    """``80/TCP``, ``8/ICMP`` (type), ``ANY``."""
    if text.upper() == "ANY":
        return 0, 0
    port, _, proto = text.partition("/")
    return PROTO_NUMBERS[Protocol(proto.upper() if proto.upper() != "ICMPV6" else "ICMPv6")], int(
        port
    )


def named_ports(raw: dict[str, list[str]]) -> dict[str, frozenset[tuple[int, int]]]:
    return {name: frozenset(parse_port(p) for p in ports) for name, ports in raw.items()}


def run(scenario: dict[str, Any]) -> str:
    bodies = [codec.validate(doc).body for doc in scenario.get("policies") or ()]
    repo = load_objects(bodies)
    identities = {int(k): v for k, v in (scenario.get("identities") or {}).items()}
    out: list[str] = [f"# {scenario.get('description', '').strip()}"]
    for raw_config in scenario.get("configs") or [{}]:
        config = config_of(raw_config)
        out.append(f"\n=== config {raw_config or '(defaults)'}")
        for ep in scenario["endpoints"]:
            cache = SelectorCache(identities)
            ident = int(ep["identity"])
            subject = Subject(ident, frozenset(cache.labels_of(ident) or ()))
            res = repo.resolve(
                subject,
                config,
                ingress_named_ports=named_ports(ep.get("namedPorts") or {}),
                egress_named_ports=named_ports(scenario.get("clusterNamedPorts") or {}),
            )
            state = compute_map_state(res, cache)
            out.append(f"\n--- endpoint {ident} {sorted(subject.labels)}")
            for d in (res.ingress, res.egress):
                mode = "enforced" if d.enforced else "not enforced"
                rules = "".join(f"\n    {r}" for r in d.refs)
                out.append(f"{d.direction}: {mode} ({d.why}){rules}")
            out.append("map entries:")
            out.extend(f"  {line}" for line in state.render())
            out.append("verdicts:")
            for q in ep.get("queries") or ():
                direction = Direction[q["direction"].upper()]
                proto, port = parse_port(str(q["port"]))
                remote = int(q["remote"])
                exp = explain_identity(
                    res, cache, remote_identity=remote, proto=proto, port=port, direction=direction
                )
                hit = state.lookup(direction, remote, proto, port)
                map_allows = hit is not None and not hit[1].deny
                if exp.verdict is not Verdict.AUDIT:
                    assert map_allows == exp.allowed, (q, exp.render(), hit)
                out.append(f"  {direction} {remote} {q['port']}:")
                out.extend(f"    {line}" for line in exp.render().splitlines())
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    got = run(yaml.safe_load(path.read_text()))
    golden = path.with_suffix(".golden")
    if UPDATE or not golden.exists():
        golden.write_text(got)
        if not UPDATE:
            pytest.fail(f"{golden.name} did not exist; written, review it and re-run")
    assert got == golden.read_text()


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 7
