"""L7: ``pylium connectivity test``: upstream's connectivity test scenarios on the current lab
(see :mod:`pylium.lab.connectivity`); prints one line per scenario and "N/N tests successful",
with every failed check explained; exit 1 on any failure."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pylium.adapters.resources import ResourceClient
from pylium.adapters.store.factory import open_store
from pylium.cli.common import fail
from pylium.core.policy.resolve import PolicyConfig
from pylium.lab import cluster, connectivity
from pylium.model.config import AgentSettings
from pylium.runtime import policy as cluster_policy
from pylium.runtime.daemon import read_configmap

connectivity_app = typer.Typer(help="End-to-end connectivity and policy tests on a lab.")


def _explainer(lab: str, dep: connectivity.Deployment) -> connectivity.Explainer:
    state = cluster.load_state(lab)
    assert state is not None
    config: PolicyConfig = cluster_policy.policy_config(
        AgentSettings.from_configmap(read_configmap(cluster.state_dir(lab) / "config.json"))
    )

    def explain(check: connectivity.Check) -> str:
        store = open_store(state.store_url)
        try:
            client = ResourceClient(store)
            snap = cluster_policy.snapshot(client, config.cluster_name)
            peers = [
                connectivity.peer(client, snap, dep, check.source, towards=check.target),
                connectivity.peer(client, snap, dep, check.target),
            ]
        finally:
            store.close()
        path = cluster_policy.explain_path(snap, config, peers[0], peers[1], 6, connectivity.PORT)
        return "\n".join("    " + line for line in path.render().splitlines())

    return explain


@connectivity_app.command("test")
def test(
    lab: Annotated[str | None, typer.Option("--lab", help="Default: the current lab.")] = None,
    pattern: Annotated[
        str, typer.Option("--test", help="Only scenarios whose name matches this regex.")
    ] = "",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per connection.")] = 1.5,
    output: Annotated[str, typer.Option("-o", "--output", help="text|json")] = "text",
    list_only: Annotated[bool, typer.Option("--list", help="List the scenarios.")] = False,
) -> None:
    """Run the scenarios: deploy test pods (kept for the next run), apply each scenario's
    policies, check every connection both ways it names, remove the policies."""
    if list_only:
        for scenario in connectivity.scenario_names():
            typer.echo(scenario)
        return
    name = lab or cluster.current_lab()
    if name is None:
        fail(["no current lab: run `pylium lab up` or pass --lab"])
    assert name is not None

    def progress(outcome: connectivity.Outcome) -> None:
        if output == "json":
            return
        if outcome.skipped:
            typer.echo(f"[-] Skipping test [{outcome.scenario}]: {outcome.skipped}")
            return
        mark = "✅" if outcome.ok else "❌"
        typer.echo(f"[{mark}] {outcome.scenario} ({outcome.checks} checks, {outcome.seconds:.1f}s)")
        for failure in outcome.failures:
            typer.echo(f"    {failure}")

    outcomes = connectivity.run(
        name, pattern=pattern, timeout=timeout, explain_with=_explainer, progress=progress
    )
    if not outcomes:
        fail([f"no scenario matches {pattern!r} (see --list)"])
    if output == "json":
        typer.echo(
            json.dumps(
                [
                    {
                        "scenario": o.scenario,
                        "ok": o.ok,
                        "checks": o.checks,
                        "failures": o.failures,
                        "skipped": o.skipped,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    else:
        typer.echo("")
        typer.echo(connectivity.summary(outcomes))
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(connectivity_app, name="connectivity")
