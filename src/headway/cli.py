"""The ``headway`` command line.

Exit codes (``errors``): 0 done, 1 the operation failed, 2 the input (YAML, address, name,
version) is wrong, 3 refused for now (the head is recovering, or another change holds the
service): retry later or pass ``--wait``. The service commands are here; the platform's
(cloud, storage, controller, API, chaos) are in ``cli_admin``.
Errors are one readable paragraph, never a traceback, and never hold a secret.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import click
import yaml
from rich.markup import escape
from rich.table import Table

from . import (
    api,
    changes,
    cli_admin,  # noqa: F401 - registers the platform commands on ``main``
    cloud,
    controller,
    deps,
    ingress,
    operations,
    placement,
    records,
    service,
    storage,
    uploads,
    views,
)
from . import logs as logs_mod
from .cli_common import _change, _deployed, _fail, _load_or_fail, _progress, _via_api, main, out
from .package import package_working_dir
from .spec import MAX_WORKERS, ServiceSpec, SpecError
from .spec_load import inline_requirement_files, load_spec_text, notes, safe_yaml


@main.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="the service YAML")
@click.option("--wait", is_flag=True, help="if the head is recovering, wait for it and then apply")
@click.option("--wait-timeout", default=600.0, show_default=True, help="seconds --wait waits at most")
@click.option("--strict", is_flag=True, help="refuse a service whose replicas could not serve without the head")
@click.option("--dry-run", is_flag=True, help="check the YAML, its files and the store; start nothing")
@click.option("--name", default=None, help="the service's name, for a file without one (a `serve build` config)")
@click.option("--working-dir", "working_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="the folder with the app's code, for a file without working_dir")  # fmt: skip
def deploy(
    path: str, wait: bool, wait_timeout: float, strict: bool, dry_run: bool, name: str | None, working_dir: str | None
) -> None:
    """Deploy a service, or update it if one of that name exists."""
    try:
        text, spec, uploaded = _read(path, name, working_dir)
    except SpecError as exc:
        _fail(str(exc), 2)
    if dry_run:
        for note in notes(spec):
            out.print(f"note: {note}", highlight=False)
        _dry_run(spec, strict)
        return
    body = {
        "yaml": text,
        "source": path,
        "env": operations.needed_env(spec, dict(os.environ)),
        "strict": strict,
        "wait": wait,
        "wait_timeout": wait_timeout,
    } | uploaded
    result = _change("PUT", f"/api/services/{spec.name}", json=body)
    _deployed(result)


@main.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="the service YAML")
@click.option("--strict", is_flag=True, help="replicas that could not serve without the head are an error")
@click.option("--name", default=None, help="the service's name, for a file without one (a `serve build` config)")
@click.option("--working-dir", "working_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="the folder with the app's code, for a file without working_dir")  # fmt: skip
def validate(path: str, strict: bool, name: str | None, working_dir: str | None) -> None:
    """Every check a deploy runs before it starts anything (the store's fitness too); starts nothing."""
    try:
        _, spec, _ = _read(path, name, working_dir)
    except SpecError as exc:
        _fail(str(exc), 2)
    for note in notes(spec):
        out.print(f"note: {note}", highlight=False)
    _dry_run(spec, strict)


def _read(path: str, name: str | None, working_dir: str | None) -> tuple[str, ServiceSpec, dict]:
    """The YAML as sent (with ``--name``/``--working-dir`` filled in), the spec it validates
    to (``parse_spec`` says when a ``--name`` disagrees with the file), and the uploads."""
    text = _with_overrides(path, name, working_dir)
    spec = load_spec_text(text, path, Path(path).parent, has_default_store=cloud.default_store_available(), name=name)
    return text, spec, _uploads(spec, Path(path).parent)


def _with_overrides(path: str, name: str | None, working_dir: str | None) -> str:
    """The file's text, with ``--name``/``--working-dir`` filled in where it has none and
    the requirements files it names read in (the control plane opens no path)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(path, [f"cannot read the file ({exc.strerror}); check the path"]) from None
    data = safe_yaml(text, path)
    if not isinstance(data, dict):
        return text  # the validation says what is wrong
    inlined = inline_requirement_files(data, Path(path).parent, path)
    if name is None and working_dir is None and inlined == data:
        return text
    data = inlined
    if name is not None and data.get("name") is None:
        data["name"] = name
    if working_dir is not None:
        if data.get("working_dir"):
            raise SpecError(path, ["working_dir: the file has one already; drop --working-dir or the field"])
        data["working_dir"] = str(Path(working_dir).resolve())
    return yaml.safe_dump(data, sort_keys=False)


def _dry_run(spec, strict: bool) -> None:
    """Every check a deploy runs before it starts anything, here, without the control plane."""
    say = _progress()
    problems = placement.spec_problems(spec)
    for p in problems:
        say(f"{'error' if strict else 'warning'}: {p}")
    if problems and strict:
        _fail("refused (--strict)", 2)
    storage.given_env.set(operations.needed_env(spec, dict(os.environ)))
    try:
        own = changes.preflight(spec, say, dry_run=True)
        crec = cloud.load()
        if own is None and spec.gcs_ft and crec is not None:
            addr = cloud.store_address(crec)
            say(f"checking GCS store {addr.masked()} (managed)")
            changes.check_store_fitness(addr, require_replica=True, progress=say)
        elif own is None and spec.gcs_ft:
            say("no cloud yet: a deploy would set up the managed store first")
    except (storage.StoreError, deps.DependencyError) as exc:
        _fail(f"{exc}\nnothing was started.", 2)
    rec = records.load(spec.name)
    what = f"update service {spec.name} (running version {rec.running_version})" if rec else f"create {spec.name}"
    workers = sum(g.count for g in spec.compute_config.worker_nodes)
    out.print(f"[green]valid[/]: a deploy would {what}: {len(spec.applications)} application(s), "
              f"{workers} worker(s); nothing was started")  # fmt: skip


def _uploads(spec, base: Path) -> dict:
    """What the control plane gets instead of paths on this machine: the packaged
    working_dir and the contents of the files the spec names (it opens no path itself)."""
    out: dict = {"files": {}}
    for field, name in uploads.named_files(spec).items():
        f = base / name
        try:
            out["files"][field] = f.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(str(f), [f"ray_gcs_external_storage_config.{field}: cannot read {f} ({exc}); "
                                     "check the path (relative to the YAML)"]) from None  # fmt: skip
    if uploads.needs_package(spec):
        with tempfile.TemporaryDirectory(prefix="hwpkg-") as tmp:
            uri = package_working_dir(spec.working_dir, Path(tmp), spec.excludes)
            out["package"] = uploads.encode_package(Path(uri.removeprefix("file://")))
    return out


@main.command()
@click.argument("name")
@click.option("--group", required=True, help="the worker group to resize")
@click.option("--count", required=True, type=click.IntRange(0, MAX_WORKERS), help="its new number of workers")
@click.option("--wait", is_flag=True, help="if the head is recovering, wait for it and then apply")
@click.option("--wait-timeout", default=600.0, show_default=True)
def scale(name: str, group: str, count: int, wait: bool, wait_timeout: float) -> None:
    """Change the number of workers of one group (an update of the service)."""
    body = {"group": group, "count": count, "wait": wait, "wait_timeout": wait_timeout}
    _deployed(_change("POST", f"/api/services/{name}/scale", json=body))


def _status_table(st: dict) -> None:
    out.print(f"[bold]{st['name']}[/]  state: [bold]{st['state']}[/]" + (f" ({st['reason']})" if st["reason"] else ""))
    if st.get("desired_version") is not None:
        out.print(f"version: running {st.get('running_version')}, desired {st['desired_version']}")
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
    if ing:
        b = Table("backend", "status", "requests", "errors", "retries", "redispatches", "5xx")
        for x in ing["backends"]:
            color = "green" if x["status"].startswith("UP") else "red"
            b.add_row(
                x["address"], f"[{color}]{x['status']}[/]", str(x["requests"]), str(x["errors"]),
                str(x["retries"]), str(x["redispatches"]), str(x["hrsp_5xx"]),
            )  # fmt: skip
        out.print(b)
        fe = ing["frontend"]
        if fe:
            out.print(
                f"endpoint totals: {fe['requests']} requests, {fe['hrsp_2xx']} 2xx, "
                f"{fe['hrsp_4xx']} 4xx, {fe['hrsp_5xx']} 5xx"
            )
    if not st["controller_pid"]:
        out.print("[yellow]no controller runs: nothing replaces a dead node ('headway controller start')[/]")


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(name: str, as_json: bool) -> None:
    """Show a service's state, nodes, applications and storage."""
    st = _via_api(
        "GET",
        f"/api/services/{name}",
        lambda: views.observe(_load_or_fail(name)) | {"controller_pid": controller.running_pid()},
    )
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _status_table(st)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def events(name: str, as_json: bool) -> None:
    """Show a service's timeline: state changes and recovery steps, with durations."""
    evs = _via_api("GET", f"/api/services/{name}/events", lambda: api.timeline(_load_or_fail(name)))
    if as_json:
        click.echo(json.dumps(evs, indent=2))
        return
    prev = evs[0]["at"] if evs else 0.0
    for e in evs:
        stamp = time.strftime("%H:%M:%S", time.localtime(e["at"])) + f".{int(e['at'] * 1000) % 1000:03d}"
        durations = " ".join(f"{k}={v}" for k, v in e["details"].items() if k.endswith("_s"))
        line = f"{stamp} {e['at'] - prev:+7.2f}s  {e['state']:<15} {e['kind']:<22} {e['message']}"
        out.print(line + (f"  [dim]({durations})[/]" if durations else ""), highlight=False, soft_wrap=True)
        prev = e["at"]


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """List the services."""
    rows = _via_api("GET", "/api/services", api.service_list)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Table("service", "state", "nodes", "GCS FT")
    for r in rows:
        t.add_row(r["name"], r["state"], str(r["nodes"]), "on" if r["gcs_ft"] else "off")
    out.print(t)


@main.command()
@click.argument("name")
@click.option("--node", default=None, help="a node's own log (its Ray output): head (the default), worker-1, …")
@click.option("--app", default=None, help="an application's replica logs, from every node (Ray's log API)")
@click.option("--controller", is_flag=True, help="the controller's lines about this service")
@click.option("--ingress", is_flag=True, help="the endpoint's HAProxy log (abnormal requests only)")
@click.option("--lines", "-n", type=click.IntRange(1, 5000), default=100, show_default=True)
@click.option("--follow", "-f", is_flag=True, help="keep printing what is appended (Ctrl-C stops)")
def logs(name: str, node: str | None, app: str | None, controller: bool, ingress: bool, lines: int,
         follow: bool) -> None:  # fmt: skip
    """Show the end of a service's log: a node's, an application's replicas', the controller's or the ingress's."""
    source = logs_mod.Source(node, app, controller, ingress)
    if follow:
        _follow_logs(name, source, lines)
        return
    params = {k: v for k, v in {"node": node, "app": app, "controller": controller or None,
                                "ingress": ingress or None, "lines": lines}.items() if v is not None}  # fmt: skip
    got = _via_api("GET", f"/api/services/{name}/logs", lambda: _local(lambda: logs_mod.read(
        _load_or_fail(name), source, lines)), params=params)  # fmt: skip
    for entry in got:
        out.print(f"[dim]-- {escape(entry['title'])}[/]", highlight=False)
        click.echo(entry["text"], nl=False)


def _follow_logs(name: str, source, lines: int) -> None:
    """Followed here, on the control host (the state dir and the nodes are reachable)."""
    stop = threading.Event()
    try:
        for text in logs_mod.follow(_load_or_fail(name), source, lines, stop):
            click.echo(text, nl=False)
    except logs_mod.InputError as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        stop.set()


def _local(read):
    try:
        return read()
    except service.InputError as exc:
        _fail(str(exc), 2)


@main.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def versions_(name: str, as_json: bool) -> None:
    """List a service's versions: every deploy, scale and rollback, and how each ended."""
    got = _via_api("GET", f"/api/services/{name}/versions", lambda: views.versions_view(_load_or_fail(name)))
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    t = Table("version", "name", "origin", "created", "outcome", "package", "note")
    for v in got["versions"]:
        mark = " (running)" if v["number"] == got["running"] else " (desired)" if v["number"] == got["desired"] else ""
        t.add_row(f"{v['number']}{mark}", v["name"] or "", v["origin"], time.strftime("%Y-%m-%d %H:%M:%S",
                  time.localtime(v["created_at"])), v["outcome"], v["package"] or "", v["note"][:60])  # fmt: skip
    out.print(t)


@main.command()
@click.argument("name")
@click.option("--version", "number", type=click.IntRange(1), default=None, help="a version (default: the running one)")
@click.option("--json", "as_json", is_flag=True)
def config(name: str, number: int | None, as_json: bool) -> None:
    """Print the deployed spec of a version as YAML (secrets masked): what runs, to read or deploy again."""
    params = {"version": number} if number else {}
    got = _via_api("GET", f"/api/services/{name}/config", lambda: _local(lambda: views.config_view(
        _load_or_fail(name), number)), params=params)  # fmt: skip
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    state = "running" if got["running"] else "not running"
    out.print(f"[dim]# service {name}, version {got['version']} ({state})[/]", highlight=False)
    for app, package in got["packages"].items():
        out.print(f"[dim]# application {app}: packages shipped as {package}[/]", highlight=False)
    click.echo(yaml.safe_dump(got["spec"], sort_keys=False), nl=False)


@main.command()
@click.argument("name")
@click.option("--to", "to", type=click.IntRange(1), default=None, help="the version (default: the one before)")
def rollback(name: str, to: int | None) -> None:
    """Deploy an earlier version of a service again (a new version with its spec and package)."""
    body = {"to": to} if to else {}
    _deployed(_change("POST", f"/api/services/{name}/rollback", json=body))


@main.command()
@click.argument("name")
def terminate(name: str) -> None:
    """Stop every node of a service and delete its keys from the store."""
    _change("DELETE", f"/api/services/{name}")
    out.print(f"service {name} terminated")


@main.command()
@click.argument("name")
def token(name: str) -> None:
    """Print the bearer token of a service's endpoint (the only place it is shown)."""
    rec = records.load(name)
    if rec is None:
        _fail(f"no service named {name}; 'headway list' shows the services", 2)
    if not rec.spec.query_auth_token_enabled:
        _fail(f"service {name} has query_auth_token_enabled: false; its endpoint needs no token", 2)
    value = ingress.token(name)
    if value is None:
        _fail(f"service {name} has no token yet; deploy it first")
    click.echo(value)


if __name__ == "__main__":
    main()
