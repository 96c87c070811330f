"""``pylium connectivity test`` on two-node labs, both routing modes: upstream's scenarios
(no policies, allow-all-except-world, client/echo ingress and egress, the NetworkPolicy
variants, another namespace, port ranges, entities, CIDR and CIDR sets with except, deny
rules, pod-to-service, pod-to-hostport and NodePort through kube-proxy replacement), every
connection checked in the datapath. Then audit mode: the same policies let the
denied connections through, so the scenario fails and each failure is explained as AUDIT."""

from __future__ import annotations

import json
import os

import pytest

from .conftest import Cli
from .test_pods import NATIVE

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["tunnel", "native"])
def test_connectivity_scenarios(cli: Cli, mode: str) -> None:
    lab = f"v{mode[0]}{os.getpid() % 10000}"
    kpr = ("--set", "kubeProxyReplacement=true")
    cli("lab", "up", "--nodes", "2", "--name", lab, *kpr, *(NATIVE if mode == "native" else ()))
    try:
        names = cli("connectivity", "test", "--list").stdout.split()
        assert len(names) >= 19 and {"client-ingress-knp", "no-policies-extra"} <= set(names)
        out = cli("connectivity", "test", "--lab", lab, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{len(names)}/{len(names)} tests successful" in out.stdout
        if mode == "tunnel":
            config = cli.home / "labs" / lab / "config.json"
            data = json.loads(config.read_text())
            config.write_text(json.dumps({**data, "policy-audit-mode": "true"}))
            for node in ("n1", "n2"):
                cli("lab", "restart", node, "--name", lab)
            audited = cli("connectivity", "test", "--test", "^client-ingress$", check=False)
            assert audited.returncode == 1, audited.stdout
            assert "0/1 tests successful" in audited.stdout
            assert "client2 -> echo-same-node: denied, but it was allowed" in audited.stdout
            assert "Verdict: AUDIT (drop reason 133: Policy denied)" in audited.stdout
    finally:
        cli("lab", "down", "--name", lab, check=False)
