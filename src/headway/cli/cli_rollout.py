"""``headway rollout``: follow a rollout, promote its canary, roll it back."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from headway.cli.cli_common import _change, _fail, _via_api, main, out, service_name


@main.group("rollout")
def rollout_group() -> None:
    """A new version rolled out beside the running one (deploy --strategy rollout)."""


def _numbers(n: dict) -> str:
    p99 = "-" if n["p99_ms"] is None else f"{n['p99_ms']:.0f} ms"
    return f"{n['requests']} req, {n['errors']} 5xx ({n['error_rate']:.1%}), p99 {p99}"


@rollout_group.command("status")
@service_name
@click.option("--json", "as_json", is_flag=True)
def status(name: str, as_json: bool) -> None:
    """The step, the traffic split and both versions' numbers."""
    st = _via_api("GET", f"/api/services/{name}/rollout", lambda here: here.rollout_status(name))
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    ro, last = st["rollout"], st["last"]
    if ro is None:
        said = f"; the last one: {last['message']}" if last else ""
        out.print(f"service {name} has no rollout in progress{said}", highlight=False)
        return
    out.print(
        f"[bold]rollout of {name}[/]: version {ro['from_version']} → {ro['version']} "
        f"(cluster {ro['cluster']}, {ro['cluster_state']})",
        highlight=False,
    )
    out.print(
        f"traffic: {ro['weights']['old']} % old, {ro['weights']['new']} % new; "
        f"workers: {ro['workers']['old']} old, {ro['workers']['new']} new",
        highlight=False,
    )
    out.print(f"now: {ro['paused'] or ro['last'] or 'starting'}", highlight=False)
    t = Table("step", "held", "old version", "new version")
    for h in ro["history"]:
        t.add_row(f"{h['percent']} %", f"{h['until'] - h['since']:.0f} s", _numbers(h["old"]), _numbers(h["new"]))
    t.add_row(
        f"{ro['percent']} % (now)",
        f"{time.time() - ro['step_since']:.0f} s",
        _numbers(ro["current"]["old"]),
        _numbers(ro["current"]["new"]),
    )
    out.print(t)


@rollout_group.command("promote")
@service_name
def promote(name: str) -> None:
    """Go on from the canary with the remaining steps."""
    from headway.cli import client

    try:
        st = client.ensure().call("POST", f"/api/services/{name}/rollout/promote")
    except client.ApiError as exc:
        _fail(str(exc), exc.exit_code)
    out.print(f"promoted: the rollout of {name} goes on from {st['rollout']['percent']} %", highlight=False)


@rollout_group.command("rollback")
@service_name
def rollback(name: str) -> None:
    """Send all traffic back to the running version and remove the new cluster."""
    result = _change("POST", f"/api/services/{name}/rollout/rollback")
    out.print(f"[bold green]rolled back[/]: {name} serves version {result['version']} only", highlight=False)
