"""The commands that read a service and change nothing: status, events, list, logs,
versions, config. Each goes through the control plane when it runs, else reads the state
dir (``_via_api``); a follow (``logs -f``) runs here, on the control host."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import click
import yaml
from rich.markup import escape
from rich.table import Table

from headway.cli.cli_common import _emit, _fail, _via_api, api_path, json_option, main, out, service_name
from headway.model.errors import HeadwayError


def _status_table(st: dict) -> None:
    out.print(f"[bold]{st['name']}[/]  state: [bold]{st['state']}[/]" + (f" ({st['reason']})" if st["reason"] else ""))
    if st.get("desired_version") is not None:
        out.print(f"version: running {st.get('running_version')}, desired {st['desired_version']}")
    ro = st.get("rollout")
    if ro:
        out.print(
            f"rollout: version {ro['version']} takes {ro['percent']} % of traffic "
            f"({ro['paused'] or ro['last'] or 'starting'}); 'headway rollout status {st['name']}'",
            highlight=False,
        )
    s = st["storage"]
    if s.get("enabled"):
        out.print(f"GCS store: {s['address']} ({s['source']})  namespace: {s['namespace']}")
        u = s.get("usage") or {}
        if "bytes" in u:
            pct = f", store at {u['store_percent']:.1f}% of maxmemory" if u.get("store_percent") else ""
            out.print(f"  this service's GCS data: {u['bytes'] / 1024:.0f} KiB{pct}")
        if s.get("alert") and s["alert"].get("active"):
            out.print(f"  [bold red]ALERT[/]: the store is at {s['alert']['percent']}% of maxmemory")
    else:
        out.print(f"[yellow]{s['note']}[/]")
    t = Table("node", "role", "ip", "alive")
    for n in st["nodes"]:
        t.add_row(n["name"], n["role"], n["ip"], "yes" if n["alive"] else "[red]no[/]")
    out.print(t)
    for g in st.get("groups", []):
        if g["autoscaled"]:
            out.print(f"group {g['name']}: {g['nodes']} node(s), follows the load between {g['min']} and {g['max']}")
    if st.get("waiting"):
        out.print("waiting for room: " + "; ".join(st["waiting"]))
    a = Table("application", "status", "route", "replicas (running/target on nodes)")
    for app in st["applications"]:
        reps = "; ".join(
            f"{dep} {d['running']}/{d['target']} on {', '.join(d['nodes']) or '-'}"
            for dep, d in app["replicas"].items()
        )
        a.add_row(app["name"], app["status"], str(app["route_prefix"]), reps)
    out.print(a)
    for app in st["applications"]:
        if app.get("message") and app["status"] != "RUNNING":
            out.print(f"[red]{app['name']}[/] ({app['status']}): {escape(app['message'][-2000:])}", highlight=False)
    ing = st.get("ingress")
    if st.get("endpoint"):
        auth = "bearer token required" if st["token_required"] else "open"
        out.print(f"endpoint: {st['endpoint']} ({auth})" + ("" if ing else "  [red]ingress is down[/]"))
        _certificate(st.get("certificate"))
    if ing:
        b = Table("backend", "status", "requests", "errors", "retries", "redispatches", "5xx")
        for x in ing["backends"]:
            color = "green" if x["status"].startswith("UP") else "red"
            b.add_row(
                x["address"],
                f"[{color}]{x['status']}[/]",
                str(x["requests"]),
                str(x["errors"]),
                str(x["retries"]),
                str(x["redispatches"]),
                str(x["hrsp_5xx"]),
            )
        out.print(b)
        fe = ing["frontend"]
        if fe:
            out.print(
                f"endpoint totals: {fe['requests']} requests, {fe['hrsp_2xx']} 2xx, "
                f"{fe['hrsp_4xx']} 4xx, {fe['hrsp_5xx']} 5xx"
            )
    if not st["controller_pid"]:
        out.print(
            "[yellow]no controller runs: nothing replaces a dead node or scales a group ('headway controller start')[/]"
        )


def _certificate(cert: dict | None) -> None:
    """The HTTPS endpoint's certificate: its names and end, in red within two weeks of it."""
    if not cert:
        return
    if cert["expires_at"] is None:
        out.print("certificate: [red]unreadable; deploy the service again with its certificate[/]")
        return
    days = (cert["expires_at"] - time.time()) / 86400
    when = time.strftime("%Y-%m-%d", time.gmtime(cert["expires_at"]))
    said = f"expires {when} ({days:.0f} days)" if days > 0 else f"[red]expired {when}[/]"
    if days > 0 and cert["expiring"]:
        said = f"[red]{said}: renew it and deploy again[/]"
    out.print(f"certificate: {', '.join(cert['names']) or '(no names)'}, {said}", highlight=False)


@main.command()
@service_name
@json_option
def status(name: str, as_json: bool) -> None:
    """Show a service's state, nodes, applications and storage."""
    st = _via_api("GET", api_path("services", name), lambda here: here.status(name))
    if not _emit(st, as_json):
        _status_table(st)


@main.command()
@service_name
@json_option
def events(name: str, as_json: bool) -> None:
    """Show a service's timeline: state changes and recovery steps, with durations."""
    evs = _via_api("GET", api_path("services", name, "events"), lambda here: here.events(name))
    if _emit(evs, as_json):
        return
    prev = evs[0]["at"] if evs else 0.0
    for e in evs:
        stamp = time.strftime("%H:%M:%S", time.localtime(e["at"])) + f".{int(e['at'] * 1000) % 1000:03d}"
        durations = " ".join(f"{k}={v}" for k, v in e["details"].items() if k.endswith("_s"))
        line = f"{stamp} {e['at'] - prev:+7.2f}s  {e['state']:<15} {e['kind']:<22} {e['message']}"
        out.print(line + (f"  [dim]({durations})[/]" if durations else ""), highlight=False, soft_wrap=True)
        prev = e["at"]


@main.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List the services."""
    rows = _via_api("GET", "/api/services", lambda here: here.service_list())
    if _emit(rows, as_json):
        return
    t = Table("service", "state", "version (running/desired)", "nodes", "GCS FT", "endpoint")
    for r in rows:
        versions_ = f"{r['running_version'] or '-'}/{r['desired_version'] or '-'}"
        ft = "on" if r["gcs_ft"] else "off"
        t.add_row(r["name"], r["state"], versions_, str(r["nodes"]), ft, r["endpoint"] or "")
    out.print(t)


@main.command()
@service_name
@click.option("--node", default=None, help="one node's part: its own output and its Serve logs (head, worker-1, …)")
@click.option("--app", default=None, help="one application's replica logs, from every node (its tracebacks too)")
@click.option("--since", default=None, metavar="DURATION", help="only lines from the last 90s, 10m, 2h, 1d")
@click.option("--controller", is_flag=True, help="the controller's lines about this service")
@click.option("--ingress", is_flag=True, help="the endpoint's HAProxy log (abnormal requests only)")
@click.option(
    "--lines", "-n", type=click.IntRange(1, 20000), default=None, help="the last N lines (100; with --since: all)"
)
@click.option("--follow", "-f", is_flag=True, help="keep printing what is appended (Ctrl-C stops)")
@json_option
def logs(
    name: str,
    node: str | None,
    app: str | None,
    since: str | None,
    controller: bool,
    ingress: bool,
    lines: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Show a service's logs: every node's and the endpoint's, merged by time, each line
    with its time and node (or one node's, or one application's replicas); or the
    controller's lines about the service, or the endpoint's HAProxy log."""
    from headway.control.logs import lines_wanted, since_of

    try:
        since_s = since_of(since)
    except HeadwayError as exc:
        raise click.BadParameter(str(exc).removeprefix("--since: "), param_hint="--since") from None
    count = lines_wanted(lines, since_s)
    source = {"node": node, "app": app, "controller": controller, "ingress": ingress, "since_s": since_s}
    params = {
        k: v
        for k, v in {
            "node": node,
            "app": app,
            "controller": controller or None,
            "ingress": ingress or None,
            "lines": count,
            "since": since,
        }.items()
        if v is not None
    }
    if follow:
        _follow_logs(name, source, params, as_json)
        return
    got = _via_api(
        "GET",
        api_path("services", name, "logs"),
        lambda here: here.logs(name, source, count),
        params=params,
    )
    if _emit(got, as_json):
        return
    for entry in got:
        out.print(f"[dim]-- {escape(entry['title'])}[/]", highlight=False)
        click.echo(entry["text"], nl=False)


def _follow_logs(name: str, source: dict, params: dict, as_json: bool) -> None:
    """Followed here on the control host (the state dir and the nodes are reachable), or
    streamed from a remote control plane. Ctrl-C stops it at once: the follow is told to
    stop, and should a read stay stuck (a node's log stream, an SSH host that vanished) the
    process ends 2 s later anyway."""
    from headway.cli import client

    stop = threading.Event()

    def interrupted(_sig: int, _frame: object) -> None:
        stop.set()
        deadline = threading.Timer(2.0, lambda: (sys.stdout.flush(), os._exit(130)))
        deadline.daemon = True
        deadline.start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    remote = client.running()
    try:
        if remote is not None and remote.remote:
            with remote.stream(api_path("services", name, "logs", "follow"), params=params) as chunks:
                _echo_all(chunks, as_json)
        else:
            from headway.cli import local

            _echo_all(local.follow_logs(name, source, params["lines"], stop), as_json)
    except (HeadwayError, client.ApiError) as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        stop.set()


def _echo_all(chunks: Iterator[str], as_json: bool) -> None:
    for text in chunks:
        click.echo(json.dumps({"text": text}) if as_json else text, nl=as_json)


@main.command("versions")
@service_name
@json_option
def versions_(name: str, as_json: bool) -> None:
    """List a service's versions: every deploy, scale and rollback, and how each ended."""
    got = _via_api("GET", api_path("services", name, "versions"), lambda here: here.versions(name))
    if _emit(got, as_json):
        return
    t = Table("version", "name", "origin", "created", "outcome", "package", "note")
    for v in got["versions"]:
        mark = " (running)" if v["number"] == got["running"] else " (desired)" if v["number"] == got["desired"] else ""
        t.add_row(
            f"{v['number']}{mark}",
            v["name"] or "",
            v["origin"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created_at"])),
            v["outcome"],
            v["package"] or "",
            v["note"][:60],
        )
    out.print(t)


@main.command()
@service_name
@click.option("--version", "number", type=click.IntRange(1), default=None, help="a version (default: the running one)")
@json_option
def config(name: str, number: int | None, as_json: bool) -> None:
    """Print the deployed spec of a version as YAML (secrets masked): what runs, to read or deploy again."""
    params = {"version": number} if number else {}
    got = _via_api(
        "GET",
        api_path("services", name, "config"),
        lambda here: here.config(name, number),
        params=params,
    )
    if _emit(got, as_json):
        return
    state = "running" if got["running"] else "not running"
    out.print(f"[dim]# service {name}, version {got['version']} ({state})[/]", highlight=False)
    for app, package in got["packages"].items():
        out.print(f"[dim]# application {app}: packages shipped as {package}[/]", highlight=False)
    click.echo(yaml.safe_dump(got["spec"], sort_keys=False), nl=False)
