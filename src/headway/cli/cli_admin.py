"""The ``headway`` commands that look after the platform rather than one service: the
cloud and its store, and chaos for demos (the control plane's own are in ``cli_control``)."""

from __future__ import annotations

import dataclasses
import os

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
from headway.state import daemon_info


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
    help="cloud config YAML: an 'ssh:' block (hosts, venv, store_address) for ssh mode; an 'alerts:' block "
    "(webhook, rules) in any mode",
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
    from headway.model import alert_rules, cloud_config
    from headway.store import cloud, cloud_setup

    try:
        rules = alert_rules.load(config_path) if config_path else None
        ssh_cfg = config_path and alert_rules.names_ssh(config_path)
        cfg = cloud_config.load_cloud_config(config_path) if config_path and ssh_cfg else None
        rec = cloud_setup.setup(mode, maxmemory, ssh_config=cfg, check_hosts=lambda c: SshProvider(c).check_ready())
        if alert_percent is not None or alert_webhook is not None or service_alert_percent is not None:
            rec = cloud.set_alerts(alert_percent, alert_webhook, service_alert_percent)
        if rules is not None:
            rec = cloud.set_alert_rules(rules)
    except alert_rules.AlertsConfigError as exc:
        _fail(str(exc), 2)
    except cloud_config.SshError as exc:
        _fail(str(exc), 2)
    except RuntimeError as exc:
        _fail(str(exc))
    store = cloud.store_address(rec).masked()
    booted = cloud_setup.boot_units(rec)
    summary = {"id": rec.id, "mode": rec.mode, "hosts": len(rec.ssh.hosts) if rec.ssh else 0, "store": store}
    if _emit(summary | {"boot_units": booted}, as_json):
        return
    for line in booted:
        out.print(escape(line))
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
    sentinels = [f"{x['host'] or 'here'}:{x['port']} {_sentinel_state(x)}" for x in st["sentinels"]]
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


def _sentinel_state(entry: dict) -> str:
    """up, down, or why it is not known (a host that did not answer in time is not a dead Sentinel)."""
    if entry["running"]:
        return "up"
    if entry.get("error"):
        return f"[yellow]unknown ({escape(entry['error'])})[/]"
    return "[red]down[/]"


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
