"""The ``headway`` command line.

Exit codes: 0 done, 1 the operation failed, 2 the input (YAML, address, name) is wrong,
3 refused for now (the head is recovering): retry later or pass ``--wait``.
Errors are one readable paragraph, never a traceback, and never hold a secret.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import (
    api,
    client,
    cloud,
    controller,
    ingress,
    operations,
    records,
    service,
    ssh,
    storage,
    store_fitness,
    store_usage,
    store_watch,
    teardown,
    uploads,
    versions,
    views,
    watchdog,
)
from .package import package_working_dir
from .records import ServiceRecord
from .spec import MAX_WORKERS, SpecError, load_spec

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    # The message is text, not markup: "ray[serve]" must not be read as a style tag.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(code)


def _progress() -> service.Progress:
    start = time.monotonic()

    def show(msg: str) -> None:
        out.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {msg}", highlight=False)

    return show


@click.group()
def main() -> None:
    """headway: Ray Serve services that survive the death of their head node."""


@main.command()
@click.option("-f", "--file", "path", required=True, type=click.Path(dir_okay=False), help="the service YAML")
@click.option("--wait", is_flag=True, help="if the head is recovering, wait for it and then apply")
@click.option("--wait-timeout", default=600.0, show_default=True, help="seconds --wait waits at most")
@click.option("--strict", is_flag=True, help="refuse a service whose replicas could not serve without the head")
def deploy(path: str, wait: bool, wait_timeout: float, strict: bool) -> None:
    """Deploy a service, or update it if one of that name exists."""
    try:
        spec = load_spec(path, has_default_store=cloud.default_store_available())
        uploaded = _uploads(spec, Path(path).parent)
    except SpecError as exc:
        _fail(str(exc), 2)
    body = {
        "yaml": Path(path).read_text(),
        "source": path,
        "env": operations.needed_env(spec, dict(os.environ)),
        "strict": strict,
        "wait": wait,
        "wait_timeout": wait_timeout,
    } | uploaded
    result = _change("PUT", f"/api/services/{spec.name}", json=body)
    _deployed(result)


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


def _change(method: str, path: str, **kwargs) -> dict:
    """Ask the control plane for a change, print its progress, return its result (or fail
    with the operation's exit code)."""
    try:
        api_client = client.ensure()
        op = api_client.follow(api_client.call(method, path, **kwargs), _show_line)
    except client.ApiError as exc:
        _fail(str(exc), exc.exit_code)
    except RuntimeError as exc:  # the control plane did not start
        _fail(str(exc))
    if op["exit_code"] != 0:
        _fail(op["error"] or "the operation failed", op["exit_code"])
    return op["result"]


def _show_line(line: str) -> None:
    out.print(line, highlight=False, markup=False)


def _deployed(result: dict) -> None:
    name, endpoint = result["name"], result["endpoint"]
    version = f" version {result['version']}" if result.get("version") else ""
    out.print(f"[bold green]service {name}{version} is RUNNING[/] (controller {controller.running_pid()} watches it)")
    out.print(f"endpoint: {endpoint}")
    if result["token_required"]:
        out.print(f'  curl -H "Authorization: Bearer $(headway token {name})" {endpoint}/', highlight=False)
    else:
        out.print(
            f"  curl {endpoint}/   (query_auth_token_enabled: false — the endpoint is open)",
            highlight=False,
        )
    if not result["gcs_ft"]:
        out.print("[yellow]GCS fault tolerance is disabled for this service[/]")


def _via_api(method: str, path: str, local: Callable[[], object], **kwargs) -> object:
    """Through the control plane when it runs; else straight from the state dir (``local``)."""
    api_client = client.running()
    if api_client is not None:
        try:
            return api_client.call(method, path, **kwargs)
        except client.ApiError as exc:
            if exc.exit_code != 1:  # a real answer (unknown service ...), not an unreachable daemon
                _fail(str(exc), exc.exit_code)
    return local()


def _load_or_fail(name: str) -> ServiceRecord:
    rec = records.load(name)
    if rec is None:
        _fail(f"no service named {name}; 'headway list' shows the services", 2)
    return rec


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
        click.echo(json.dumps([{"name": r["name"], "state": r["state"]} for r in rows]))
        return
    t = Table("service", "state", "nodes", "GCS FT")
    for r in rows:
        t.add_row(r["name"], r["state"], str(r["nodes"]), "on" if r["gcs_ft"] else "off")
    out.print(t)


@main.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def versions_(name: str, as_json: bool) -> None:
    """List a service's versions: every deploy, scale and rollback, and how each ended."""
    got = _via_api("GET", f"/api/services/{name}/versions", lambda: _local_versions(name))
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    t = Table("version", "name", "origin", "created", "outcome", "package", "note")
    for v in got["versions"]:
        mark = " (running)" if v["number"] == got["running"] else " (desired)" if v["number"] == got["desired"] else ""
        t.add_row(f"{v['number']}{mark}", v["name"] or "", v["origin"], time.strftime("%Y-%m-%d %H:%M:%S",
                  time.localtime(v["created_at"])), v["outcome"], v["package"] or "", v["note"][:60])  # fmt: skip
    out.print(t)


def _local_versions(name: str) -> dict:
    rec = _load_or_fail(name)
    return {"desired": rec.desired_version, "running": rec.running_version,
            "versions": [v.view() for v in versions.all_of(name)]}  # fmt: skip


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


@main.group("cloud")
def cloud_group() -> None:
    """The local cloud: networking mode and the managed GCS store."""


@cloud_group.command("setup")
@click.option(
    "--mode",
    type=click.Choice(cloud.MODES),
    default=None,
    help="netns (root; a namespace per node), loopback, or ssh (with --config); default: netns as root",
)
@click.option("--maxmemory", default="1gb", show_default=True, help="the store's maxmemory")
@click.option("--alert-percent", type=click.FloatRange(1, 100), default=None, help="memory alert threshold (80)")
@click.option("--alert-webhook", default=None, help="URL that store alerts are POSTed to ('' removes it)")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="cloud config YAML with an 'ssh:' block (hosts, venv, store_address): ssh mode")  # fmt: skip
def cloud_setup(
    mode: str | None, maxmemory: str, alert_percent: float | None, alert_webhook: str | None, config_path: str | None
) -> None:
    """Start the managed store (primary + replica); idempotent. With --config: real hosts over SSH."""
    try:
        cfg = ssh.load_cloud_config(config_path) if config_path else None
        rec = cloud.setup(mode, maxmemory, ssh_config=cfg)
        if alert_percent is not None or alert_webhook is not None:
            rec = cloud.set_alerts(alert_percent, alert_webhook)
    except ssh.SshError as exc:
        _fail(str(exc), 2)
    except RuntimeError as exc:
        _fail(str(exc))
    hosts = f", {len(rec.ssh.hosts)} hosts over SSH" if rec.ssh else ""
    out.print(f"cloud {rec.id} ready ({rec.mode} mode{hosts}); GCS store {cloud.store_address(rec).masked()}")


@cloud_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def cloud_status(as_json: bool) -> None:
    """Show the managed store."""
    rec = cloud.load()
    if rec is None:
        _fail("no cloud is set up; run 'headway cloud setup'", 2)
    st = cloud.status(rec) | store_usage.cloud_usage(rec)
    st["alert"] = store_watch.alert_of("cloud")
    st["alert_percent"] = rec.alert_percent
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    out.print(f"cloud {st['id']} ({st['mode']} mode)  store {st['address']}")
    t = Table("role", "port", "running", "memory", "replicas")
    for s in st["store"]:
        mem = f"{s.get('used_memory', 0) / 2**20:.1f} MiB / {s.get('maxmemory', 0) / 2**20:.0f} MiB"
        role = {"master": "primary", "slave": "replica"}.get(s.get("replication_role", ""), s["role"])
        t.add_row(
            role,
            str(s["port"]),
            "yes" if s["running"] else "[red]no[/]",
            mem,
            str(s.get("connected_replicas", "")),
        )
    out.print(t)
    if st.get("percent") is not None:
        out.print(f"memory: {st['percent']:.1f}% of maxmemory (alert at {rec.alert_percent:.0f}%)")
    if st["alert"] and st["alert"]["active"]:
        out.print(f"[bold red]ALERT[/]: store at {st['alert']['percent']}% of maxmemory")
    n = Table("namespace", "service", "bytes")
    for ns, info in st["namespaces"].items():
        n.add_row(ns, info["service"] or "[yellow]none (leftover)[/]", str(info["bytes"]))
    out.print(n)
    if st["leftovers"]:
        out.print(f"leftover namespaces: {', '.join(st['leftovers'])} — remove with 'headway storage cleanup NS'")


@cloud_group.command("teardown")
@click.option("--force", is_flag=True, help="terminate every service first")
def cloud_teardown(force: bool) -> None:
    """Stop the managed store and remove the cloud (its data too)."""
    left = records.all_records()
    if left and not force:
        _fail(f"services still exist ({', '.join(r.name for r in left)}); terminate them or pass --force", 2)
    for r in left:
        teardown.terminate(r.name, _progress())
    pid = controller.stop()
    if pid:
        out.print(f"controller {pid} stopped")
    cloud.teardown()
    out.print("cloud removed")


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


@main.group("storage")
def storage_group() -> None:
    """Check a GCS store, clean up leftover namespaces."""


@storage_group.command("check")
@click.argument("address")
@click.option("--username", default=None)
@click.option("--password-env", default=None, help="environment variable holding the password")
@click.option("--password-file", default=None, help="file holding the password")
@click.option("--ca-cert", default=None, help="CA bundle for rediss:// (default: the system bundle)")
@click.option("--client-cert", default=None)
@click.option("--client-key", default=None)
@click.option("--require-replica", is_flag=True, help="a missing replica is an error, not a warning")
@click.option("--namespace", default=storage.PROBE_NAMESPACE, show_default=True, help="where to probe permissions")
def storage_check(
    address: str,
    username: str | None,
    password_env: str | None,
    password_file: str | None,
    ca_cert: str | None,
    client_cert: str | None,
    client_key: str | None,
    require_replica: bool,
    namespace: str,
) -> None:
    """Is a store fit for the GCS? The same checks every deploy runs. Exit 2 when not."""
    try:
        addr = storage.parse_address(address)
        password = storage.resolve_password(password_env, password_file, environ=os.environ)
        addr = addr.with_credentials(username, password)
        if addr.tls:
            addr = dataclasses.replace(addr, ca_cert=ca_cert or storage.DEFAULT_CA_BUNDLE,
                                       client_cert=client_cert, client_key=client_key)  # fmt: skip
        findings = store_fitness.judge(storage.inspect(addr, namespace), require_replica)
    except storage.StoreError as exc:
        _fail(str(exc), 2)
    colors = {"error": "red", "warning": "yellow", "info": "green"}
    out.print(f"store {addr.masked()}")
    for f in findings:
        out.print(f"  [{colors[f.level]}]{f.level:<7}[/] {f.check}: {f.message}", highlight=False)
    if store_fitness.errors(findings):
        _fail("the store is not fit for the GCS (see the errors above)", 2)
    out.print("[green]fit for the GCS[/]")


@storage_group.command("cleanup")
@click.argument("namespace")
def storage_cleanup(namespace: str) -> None:
    """Delete a leftover namespace (no live service uses it) from the managed store."""
    try:
        removed = store_usage.cleanup_leftover(namespace)
    except RuntimeError as exc:
        _fail(str(exc), 2)
    out.print(f"deleted {removed} key(s) of namespace {namespace}")


@main.group("controller")
def controller_group() -> None:
    """The control plane that watches every service and replaces dead heads and workers."""


@controller_group.command("run")
@click.option(
    "--failure-threshold",
    type=click.IntRange(1, 100),
    default=lambda: int(os.environ.get("HEADWAY_HEAD_FAILURE_THRESHOLD", watchdog.FAILURE_THRESHOLD)),
    show_default=f"{watchdog.FAILURE_THRESHOLD} or $HEADWAY_HEAD_FAILURE_THRESHOLD",
    help="failed GCS health checks in a row before a live head is declared dead",
)
@click.option(
    "--period",
    type=click.FloatRange(0.1, 10),
    default=lambda: float(os.environ.get("HEADWAY_PROBE_PERIOD_S", watchdog.PROBE_PERIOD_S)),
    show_default=f"{watchdog.PROBE_PERIOD_S} or $HEADWAY_PROBE_PERIOD_S",
    help="seconds between two probes of a head",
)
def controller_run(failure_threshold: int, period: float) -> None:
    """Run the controller in the foreground (deploy starts one in the background)."""
    try:
        controller.run_forever(failure_threshold, period)
    except RuntimeError as exc:
        _fail(str(exc))


@controller_group.command("start")
def controller_start() -> None:
    """Start the controller in the background unless one runs."""
    try:
        pid = controller.start_daemon()
    except RuntimeError as exc:
        _fail(str(exc))
    out.print(f"controller {pid} runs; log: {controller.logfile()}")


@controller_group.command("stop")
def controller_stop() -> None:
    """Stop the controller. Services keep serving; nothing repairs them until it runs again."""
    pid = controller.stop()
    out.print(f"controller {pid} stopped" if pid else "no controller runs")


@controller_group.command("status")
def controller_status() -> None:
    pid = controller.running_pid()
    out.print(f"controller {pid} runs; log: {controller.logfile()}" if pid else "no controller runs")
    if not pid:
        sys.exit(1)


@main.group("chaos")
def chaos_group() -> None:
    """Break things on purpose, for demos: SIGKILL every process of a node's host."""


@chaos_group.command("kill-head")
@click.argument("name")
def chaos_kill_head(name: str) -> None:
    """SIGKILL every process of the head host (a head crash)."""
    r = _chaos(name, "kill-head", None)
    out.print(f"killed {r['killed']} process(es) of the head of {name} at {r['ip']}")


@chaos_group.command("kill-worker")
@click.argument("name")
@click.option("--node", default=None, help="the worker to kill (default: the first)")
def chaos_kill_worker(name: str, node: str | None) -> None:
    """SIGKILL every process of a worker host (a worker crash)."""
    r = _chaos(name, "kill-worker", node)
    out.print(f"killed {r['killed']} process(es) of worker {r['node']} of {name} at {r['ip']}")


def _chaos(name: str, action: str, node: str | None) -> dict:
    """Through the control plane when it runs (it records who did it), else directly."""

    def local() -> dict:
        try:
            return service.chaos(_load_or_fail(name), "head" if action == "kill-head" else "worker", node)
        except service.DeployError as exc:
            _fail(str(exc), 2)

    return _via_api("POST", f"/api/services/{name}/chaos/{action}", local, params={"node": node} if node else {})


@main.group("api")
def api_group() -> None:
    """The control plane's REST API (docs at /docs, metrics at /metrics)."""


@api_group.command("token")
@click.option("--metrics", is_flag=True, help="the read-only token that opens /metrics only (for Prometheus)")
def api_token(metrics: bool) -> None:
    """Print the API token (Authorization: Bearer ...); made at the control plane's first start."""
    click.echo(api.ensure_metrics_token() if metrics else api.ensure_token())


@api_group.command("url")
def api_url() -> None:
    """Print where the API listens (starting the control plane if needed)."""
    try:
        click.echo(client.ensure().base_url)
    except (client.ApiError, RuntimeError) as exc:
        _fail(str(exc))


@main.command()
def dashboard() -> None:
    """Print the web dashboard's URL (with the token in its fragment, never sent to a server)."""
    try:
        base = client.ensure().base_url
    except (client.ApiError, RuntimeError) as exc:
        _fail(str(exc))
    click.echo(f"{base}/#token={api.ensure_token()}")


if __name__ == "__main__":
    main()
