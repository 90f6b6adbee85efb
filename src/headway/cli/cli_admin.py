"""The ``headway`` commands that look after the platform rather than one service: the
cloud and its store, the control plane, its API and dashboard, and chaos for demos."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from headway.cli.cli_common import (
    _emit,
    _fail,
    _on_control_host,
    _progress,
    _via_api,
    api_path,
    json_option,
    main,
    out,
    service_name,
)
from headway.model.cloud_config import MODES
from headway.model.store_address import PROBE_NAMESPACE
from headway.plan import watchdog
from headway.state import daemon_info, db


@main.group("cloud")
def cloud_group() -> None:
    """The local cloud: networking mode and the managed GCS store."""


@cloud_group.command("setup")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help="netns (root; a namespace per node), loopback, or ssh (with --config); default: netns as root",
)
@click.option("--maxmemory", default="1gb", show_default=True, help="the store's maxmemory")
@click.option("--alert-percent", type=click.FloatRange(1, 100), default=None, help="memory alert threshold (80)")
@click.option(
    "--service-alert-percent",
    type=click.FloatRange(0.001, 100),
    default=None,
    help="one service's share of the managed store's maxmemory that raises an alert naming it (25)",
)
@click.option("--alert-webhook", default=None, help="URL that store alerts are POSTed to ('' removes it)")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="cloud config YAML with an 'ssh:' block (hosts, venv, store_address): ssh mode",
)
@json_option
def cloud_setup_command(
    mode: str | None,
    maxmemory: str,
    alert_percent: float | None,
    service_alert_percent: float | None,
    alert_webhook: str | None,
    config_path: str | None,
    as_json: bool,
) -> None:
    """Start the managed store (primary + replica); idempotent. With --config: real hosts over SSH."""
    _on_control_host("cloud setup")
    from headway.cluster.ssh_provider import SshProvider
    from headway.model import cloud_config
    from headway.store import cloud, cloud_setup

    try:
        cfg = cloud_config.load_cloud_config(config_path) if config_path else None
        rec = cloud_setup.setup(mode, maxmemory, ssh_config=cfg, check_hosts=lambda c: SshProvider(c).check_ready())
        if alert_percent is not None or alert_webhook is not None or service_alert_percent is not None:
            rec = cloud.set_alerts(alert_percent, alert_webhook, service_alert_percent)
    except cloud_config.SshError as exc:
        _fail(str(exc), 2)
    except RuntimeError as exc:
        _fail(str(exc))
    store = cloud.store_address(rec).masked()
    if _emit({"id": rec.id, "mode": rec.mode, "hosts": len(rec.ssh.hosts) if rec.ssh else 0, "store": store}, as_json):
        return
    hosts = f", {len(rec.ssh.hosts)} hosts over SSH" if rec.ssh else ""
    out.print(f"cloud {rec.id} ready ({rec.mode} mode{hosts}); GCS store {store}")


@cloud_group.command("status")
@json_option
def cloud_status(as_json: bool) -> None:
    """Show the managed store."""
    st = _via_api("GET", "/api/storage", lambda here: here.storage())["cloud"]
    if st is None:
        _fail("no cloud is set up; run 'headway cloud setup'", 2)
    if _emit(st, as_json):
        return
    out.print(f"cloud {st['id']} ({st['mode']} mode)  store {st['address']}")
    if st.get("endpoint_address"):
        ea = st["endpoint_address"]
        held = ea["held_by"] or "[red]none[/]"
        out.print(f"endpoints at {ea['address']} on {', '.join(ea['hosts'])}: held by {held}")
    t = Table("role", "address", "running", "memory", "replicas")
    for s in st["store"]:
        mem = f"{s.get('used_memory', 0) / 2**20:.1f} MiB / {s.get('maxmemory', 0) / 2**20:.0f} MiB"
        role = {"master": "primary", "slave": "replica"}.get(s.get("replication_role", ""), s["role"])
        t.add_row(
            role,
            f"{s['host']}:{s['port']}" if s.get("host") else str(s["port"]),
            "yes" if s["running"] else "[red]no[/]",
            mem,
            str(s.get("connected_replicas", "")),
        )
    out.print(t)
    sentinels = [
        f"{x['host'] or 'here'}:{x['port']} {'up' if x['running'] else '[red]down[/]'}" for x in st["sentinels"]
    ]
    out.print(f"Sentinel: {', '.join(sentinels)}")
    if st.get("percent") is not None:
        out.print(f"memory: {st['percent']:.1f}% of maxmemory (alert at {st['alert_percent']:.0f}%)")
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
@json_option
def cloud_teardown(force: bool, as_json: bool) -> None:
    """Stop the managed store and remove the cloud (its data too)."""
    _on_control_host("cloud teardown")
    from headway.control import teardown
    from headway.control.context import Context
    from headway.state import records
    from headway.store import cloud_setup

    left = [r for r in records.all_records() if r.parent is None]  # a rollout's cluster goes with its service
    if left and not force:
        _fail(f"services still exist ({', '.join(r.name for r in left)}); terminate them or pass --force", 2)
    ctx = Context.load()
    for r in left:
        teardown.terminate(ctx, r.name, _progress())
    for r in records.all_records():  # a rollout cluster its service no longer names (a crash mid-rollout)
        teardown.terminate(ctx, r.name, _progress())
    pid = daemon_info.stop()
    if pid:
        out.print(f"controller {pid} stopped")
    cloud_setup.teardown()
    if not _emit({"removed": True, "controller_stopped": pid}, as_json):
        out.print("cloud removed")


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
@click.option("--namespace", default=PROBE_NAMESPACE, show_default=True, help="where to probe permissions")
@json_option
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
    as_json: bool,
) -> None:
    """Is a store fit for the GCS? The same checks every deploy runs. Exit 2 when not."""
    from headway.plan import store_fitness
    from headway.store import storage

    try:
        addr = storage.parse_address(address)
        password = storage.resolve_password(password_env, password_file, environ=os.environ)
        addr = addr.with_credentials(username, password)
        if addr.tls:
            addr = dataclasses.replace(
                addr, ca_cert=ca_cert or storage.DEFAULT_CA_BUNDLE, client_cert=client_cert, client_key=client_key
            )
        findings = store_fitness.judge(storage.inspect(addr, namespace), require_replica)
    except storage.StoreError as exc:
        _fail(str(exc), 2)
    fit = not store_fitness.errors(findings)
    said = [{"level": f.level, "check": f.check, "message": f.message} for f in findings]
    if not _emit({"address": addr.masked(), "fit": fit, "findings": said}, as_json):
        colors = {"error": "red", "warning": "yellow", "info": "green"}
        out.print(f"store {addr.masked()}")
        for f in findings:
            out.print(
                f"  [{colors[f.level]}]{f.level:<7}[/] {f.check}: {escape(f.message)}", highlight=False, soft_wrap=True
            )
    if not fit:
        _fail("the store is not fit for the GCS (see the errors above)", 2)
    if not as_json:
        out.print("[green]fit for the GCS[/]")


@storage_group.command("cleanup")
@click.argument("namespace")
@json_option
def storage_cleanup(namespace: str, as_json: bool) -> None:
    """Delete a leftover namespace (no live service uses it) from the managed store."""
    done = _via_api("DELETE", api_path("storage", "namespaces", namespace), lambda here: here.cleanup(namespace))
    if not _emit(done, as_json):
        out.print(f"deleted {done['removed_keys']} key(s) of namespace {namespace}")


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
    _on_control_host("controller run")
    args = ["--failure-threshold", str(failure_threshold), "--period", str(period)]
    os.execv(
        sys.executable, [sys.executable, "-m", "headway.daemon", *args]
    )  # the same PID, as a service manager wants


@controller_group.command("unit")
@click.option(
    "--env-file",
    "env_path",
    default=None,
    metavar="FILE",
    help="the configuration file the controller reads ($HEADWAY_CONTROLLER_ENV, else /etc/headway/controller.env)",
)
def controller_unit(env_path: str | None) -> None:
    """Print a systemd unit that runs the controller at boot and after a crash (leader or
    standby: the same unit; the lease decides). Its settings come from the env file."""
    _on_control_host("controller unit")
    import getpass

    from headway.plan.systemd_units import Unit, render
    from headway.system import env_file, paths

    config = Path(env_path).resolve() if env_path else env_file.path()
    unit = Unit(
        name="headway-controller.service",
        description="headway control plane (leader or standby: the lease decides)",
        exec_start=[sys.executable, "-m", "headway.daemon"],
        environment={"HEADWAY_HOME": str(paths.home_path().resolve()), "HEADWAY_CONTROLLER_ENV": str(config)},
        environment_file=str(config),
        user=None if os.geteuid() == 0 else getpass.getuser(),
        kill_mode="process",  # its nodes, stores and endpoints outlive a restart of the controller
    )
    click.echo(
        f"# headway controller unit > /etc/systemd/system/{unit.name}\n"
        f"# systemctl daemon-reload && systemctl enable --now {unit.name.removesuffix('.service')}\n" + render(unit),
        nl=False,
    )


@controller_group.command("start")
@json_option
def controller_start(as_json: bool) -> None:
    """Start the controller in the background unless one runs."""
    _on_control_host("controller start")
    try:
        pid = daemon_info.start()
    except RuntimeError as exc:
        _fail(str(exc))
    if not _emit({"pid": pid, "log": str(daemon_info.logfile())}, as_json):
        out.print(f"controller {pid} runs; log: {daemon_info.logfile()}")


@controller_group.command("stop")
@json_option
def controller_stop(as_json: bool) -> None:
    """Stop the controller. Services keep serving; nothing repairs them until it runs again."""
    _on_control_host("controller stop")
    pid = daemon_info.stop()
    if not _emit({"stopped": pid}, as_json):
        out.print(f"controller {pid} stopped" if pid else "no controller runs")


@controller_group.command("status")
@json_option
def controller_status(as_json: bool) -> None:
    """Whether the controller runs here (exit 1 when not)."""
    _on_control_host("controller status")
    pid = daemon_info.running_pid()
    if not _emit({"running": pid is not None, "pid": pid, "log": str(daemon_info.logfile())}, as_json):
        out.print(f"controller {pid} runs; log: {daemon_info.logfile()}" if pid else "no controller runs")
    if not pid:
        sys.exit(1)


@main.group("chaos")
def chaos_group() -> None:
    """Break things on purpose, for demos: SIGKILL every process of a node's host."""


@chaos_group.command("kill-head")
@service_name
@json_option
def chaos_kill_head(name: str, as_json: bool) -> None:
    """SIGKILL every process of the head host (a head crash)."""
    r = _chaos(name, "kill-head", None)
    if not _emit(r, as_json):
        out.print(f"killed {r['killed']} process(es) of the head of {name} at {r['ip']}")


@chaos_group.command("kill-worker")
@service_name
@click.option("--node", default=None, help="the worker to kill (default: the first)")
@json_option
def chaos_kill_worker(name: str, node: str | None, as_json: bool) -> None:
    """SIGKILL every process of a worker host (a worker crash)."""
    r = _chaos(name, "kill-worker", node)
    if not _emit(r, as_json):
        out.print(f"killed {r['killed']} process(es) of worker {r['node']} of {name} at {r['ip']}")


def _chaos(name: str, action: str, node: str | None) -> dict:
    """Through the control plane when it runs (it records who did it), else directly."""
    return _via_api(
        "POST",
        api_path("services", name, "chaos", action),
        lambda here: here.chaos(name, action, node),
        params={"node": node} if node else {},
    )


@main.group("api")
def api_group() -> None:
    """The control plane's REST API (docs at /docs, metrics at /metrics)."""


@api_group.command("token")
@click.option("--metrics", is_flag=True, help="the read-only token that opens /metrics only (for Prometheus)")
@json_option
def api_token(metrics: bool, as_json: bool) -> None:
    """Print the API token (Authorization: Bearer ...); made at the control plane's first start."""
    _on_control_host("api token")
    value = db.metrics_token() if metrics else db.api_token()
    if not _emit({"token": value, "scope": "metrics" if metrics else "api"}, as_json):
        click.echo(value)


@api_group.command("url")
@json_option
def api_url(as_json: bool) -> None:
    """Print where the API listens (starting the control plane if needed)."""
    from headway.cli import client

    try:
        url = client.ensure().base_url
    except (client.ApiError, RuntimeError) as exc:
        _fail(str(exc))
    if not _emit({"url": url}, as_json):
        click.echo(url)


@main.command()
@json_option
def dashboard(as_json: bool) -> None:
    """Print the web dashboard's URL (with the token in its fragment, never sent to a server)."""
    from headway.cli import client, target

    remote = target.remote()
    if remote is not None:
        url = f"{remote.url}/#token={remote.token}"
    else:
        try:
            base = client.ensure().base_url
        except (client.ApiError, RuntimeError) as exc:
            _fail(str(exc))
        url = f"{base}/#token={db.api_token()}"
    if not _emit({"url": url}, as_json):
        click.echo(url)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the tab completion script of a shell (commands, options and service names):
    eval "$(headway completion bash)" in ~/.bashrc, or the like."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the choice admits only the shells click knows
    click.echo(cls(main, {}, "headway", "_HEADWAY_COMPLETE").source())
