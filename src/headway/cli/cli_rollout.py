"""``headway rollout``: follow a rollout, promote its canary, roll it back."""

from __future__ import annotations

import time

import click
from rich.markup import escape
from rich.table import Table

from headway.cli.cli_common import _change, _emit, _fail, _via_api, api_path, json_option, main, out, service_name
from headway.model.errors import EXIT_FAILED, EXIT_RETRY


@main.group("rollout")
def rollout_group() -> None:
    """A new version rolled out beside the running one (deploy --strategy rollout)."""


def _numbers(n: dict) -> str:
    p99 = "-" if n["p99_ms"] is None else f"{n['p99_ms']:.0f} ms"
    return f"{n['requests']} req, {n['errors']} 5xx ({n['error_rate']:.1%}), p99 {p99}"


def wait_outcome(st: dict, seen: int | None = None) -> tuple[int, str] | None:
    """Whether waiting on a rollout is over, and with which exit code: 0 it completed (or
    there is none), 1 it was rolled back, 3 it stands at its canary until promoted; None
    while it goes on. ``seen``: the version whose rollout the wait saw in progress: its own
    end decides (the traffic moves a few seconds before the old cluster is gone and the
    end is recorded)."""
    ro, last, name = st["rollout"], st["last"], st["name"]
    if ro is None and seen is not None and (last is None or last.get("version") != seen):
        return None
    if ro is not None:
        if ro.get("held_for_promote"):
            return (
                EXIT_RETRY,
                f"the rollout of {name} holds its canary at {ro['percent']} %: "
                f"'headway rollout promote {name}' goes on",
            )
        return None
    if last is None:
        return 0, f"service {name} has had no rollout"
    if last["kind"] == "rollout_rolled_back":
        return EXIT_FAILED, f"the rollout of {name} was rolled back: {last['message']}"
    return 0, f"the rollout of {name} completed: {last['message']}"


def wait_for_rollout(name: str, timeout_s: float, poll_s: float = 1.0) -> tuple[int, dict]:
    """Follow a rollout until it ends (each new step or reason is said once); its exit code
    and last status."""
    deadline, said, seen = time.monotonic() + timeout_s, None, None
    while True:
        st = _via_api("GET", api_path("services", name, "rollout"), lambda here: here.rollout_status(name))
        ro = st["rollout"]
        if ro is not None:
            seen = ro["version"]
        if ro is not None and (ro["percent"], ro["paused"] or ro["last"]) != said:
            said = (ro["percent"], ro["paused"] or ro["last"])
            out.print(f"{ro['percent']:>3} % on version {ro['version']}: {said[1] or 'starting'}", highlight=False)
        ended = wait_outcome(st, seen)
        if ended is not None:
            code, message = ended
            return code, st | {"outcome": message, "exit_code": code}
        if time.monotonic() > deadline:
            _fail(
                f"the rollout of {name} still runs after {timeout_s:.0f} s; 'headway rollout status {name}' follows it"
            )
        time.sleep(poll_s)


def _end_wait(name: str, timeout_s: float, as_json: bool) -> None:
    code, st = wait_for_rollout(name, timeout_s)
    if not _emit(st, as_json) and code == 0:
        out.print(f"[bold green]{escape(st['outcome'])}[/]", highlight=False)
    if code != 0:
        _fail(st["outcome"], code)


@rollout_group.command("status")
@service_name
@json_option
@click.option(
    "--wait", is_flag=True, help="block until the rollout ends: exit 0 completed, 1 rolled back, 3 canary held"
)
@click.option("--wait-timeout", default=3600.0, show_default=True, help="seconds --wait waits at most (then exit 1)")
def status(name: str, as_json: bool, wait: bool, wait_timeout: float) -> None:
    """The step, the traffic split and both versions' numbers."""
    if wait:
        _end_wait(name, wait_timeout, as_json)
        return
    st = _via_api("GET", api_path("services", name, "rollout"), lambda here: here.rollout_status(name))
    if _emit(st, as_json):
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
@json_option
def promote(name: str, as_json: bool) -> None:
    """Go on from the canary with the remaining steps."""
    from headway.cli import client

    try:
        st = client.ensure().call("POST", api_path("services", name, "rollout", "promote"))
    except client.ApiError as exc:
        _fail(str(exc), exc.exit_code)
    if not _emit(st, as_json):
        out.print(f"promoted: the rollout of {name} goes on from {st['rollout']['percent']} %", highlight=False)


@rollout_group.command("rollback")
@service_name
@json_option
def rollback(name: str, as_json: bool) -> None:
    """Send all traffic back to the running version and remove the new cluster."""
    result = _change("POST", api_path("services", name, "rollout", "rollback"))
    if not _emit(result, as_json):
        out.print(f"[bold green]rolled back[/]: {name} serves version {result['version']} only", highlight=False)
