"""The ``headway`` command line.

Exit codes: 0 done, 1 the operation failed, 2 the input (YAML, address, name) is wrong.
Errors are one readable paragraph, never a traceback, and never hold a secret.
"""

from __future__ import annotations

import json
import sys
import time

import click
from rich.console import Console
from rich.table import Table

from . import cloud, records, service, storage
from .spec import SpecError, load_spec

out = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
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
def deploy(path: str) -> None:
    """Deploy a service, or update it if one of that name exists."""
    try:
        spec = load_spec(path, has_default_store=cloud.default_store_available())
    except SpecError as exc:
        _fail(str(exc), 2)
    try:
        rec = service.deploy(spec, _progress())
    except storage.StoreError as exc:
        _fail(f"{exc}\nnothing was started.", 2)
    except RuntimeError as exc:  # DeployError, CloudError, ServeError, ProviderError ...
        _fail(str(exc))
    out.print(f"[bold green]service {rec.name} is RUNNING[/]")
    for w in rec.workers:
        out.print(f"  endpoint ({w.name}): {rec.proxy_url(w)}")
    if not rec.gcs_ft:
        out.print("[yellow]GCS fault tolerance is disabled for this service[/]")


def _status_table(st: dict) -> None:
    out.print(
        f"[bold]{st['name']}[/]  state: [bold]{st['state']}[/]"
        + (f" ({st['reason']})" if st["reason"] else "")
    )
    s = st["storage"]
    if s.get("enabled"):
        out.print(f"GCS store: {s['address']} ({s['source']})  namespace: {s['namespace']}")
    else:
        out.print(f"[yellow]{s['note']}[/]")
    t = Table("node", "role", "ip", "alive", "proxy")
    for n in st["nodes"]:
        t.add_row(n["name"], n["role"], n["ip"], "yes" if n["alive"] else "[red]no[/]", n["proxy_url"])
    out.print(t)
    a = Table("application", "status", "route")
    for app in st["applications"]:
        a.add_row(app["name"], app["status"], str(app["route_prefix"]))
    out.print(a)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(name: str, as_json: bool) -> None:
    """Show a service's state, nodes, applications and storage."""
    rec = records.load(name)
    if rec is None:
        _fail(f"no service named {name}; 'headway list' shows the services", 2)
    st = service.observe(rec)
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        _status_table(st)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def events(name: str, as_json: bool) -> None:
    """Show a service's timeline: state changes and recovery steps, with durations."""
    rec = records.load(name)
    if rec is None:
        _fail(f"no service named {name}; 'headway list' shows the services", 2)
    evs = [e.model_dump() for e in rec.events]
    if as_json:
        click.echo(json.dumps(evs, indent=2))
        return
    t = Table("time", "+s", "state", "event", "message")
    prev = evs[0]["at"] if evs else 0.0
    for e in evs:
        stamp = time.strftime("%H:%M:%S", time.localtime(e["at"])) + f".{int(e['at'] * 1000) % 1000:03d}"
        t.add_row(stamp, f"{e['at'] - prev:.2f}", e["state"], e["kind"], e["message"])
        prev = e["at"]
    out.print(t)


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """List the services."""
    recs = records.all_records()
    if as_json:
        click.echo(json.dumps([{"name": r.name, "state": r.state} for r in recs]))
        return
    t = Table("service", "state", "nodes", "GCS FT")
    for r in recs:
        t.add_row(r.name, r.state, str(len(r.nodes)), "on" if r.gcs_ft else "off")
    out.print(t)


@main.command()
@click.argument("name")
def terminate(name: str) -> None:
    """Stop every node of a service and delete its keys from the store."""
    try:
        service.terminate(name, _progress())
    except service.DeployError as exc:
        _fail(str(exc), 2)
    except RuntimeError as exc:
        _fail(str(exc))
    out.print(f"service {name} terminated")


@main.group("cloud")
def cloud_group() -> None:
    """The local cloud: networking mode and the managed GCS store."""


@cloud_group.command("setup")
@click.option(
    "--mode",
    type=click.Choice(cloud.MODES),
    default=None,
    help="netns (root; a namespace per node) or loopback; default: netns as root",
)
@click.option("--maxmemory", default="1gb", show_default=True, help="the store's maxmemory")
def cloud_setup(mode: str | None, maxmemory: str) -> None:
    """Start the managed store (primary + replica); idempotent."""
    try:
        rec = cloud.setup(mode, maxmemory)
    except RuntimeError as exc:
        _fail(str(exc))
    out.print(f"cloud {rec.id} ready ({rec.mode} mode); GCS store {cloud.store_address(rec).masked()}")


@cloud_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def cloud_status(as_json: bool) -> None:
    """Show the managed store."""
    rec = cloud.load()
    if rec is None:
        _fail("no cloud is set up; run 'headway cloud setup'", 2)
    st = cloud.status(rec)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    out.print(f"cloud {st['id']} ({st['mode']} mode)  store {st['address']}")
    t = Table("role", "port", "running", "memory", "replicas")
    for s in st["store"]:
        mem = f"{s.get('used_memory', 0) / 2**20:.1f} MiB / {s.get('maxmemory', 0) / 2**20:.0f} MiB"
        t.add_row(
            s["role"],
            str(s["port"]),
            "yes" if s["running"] else "[red]no[/]",
            mem,
            str(s.get("connected_replicas", "")),
        )
    out.print(t)


@cloud_group.command("teardown")
@click.option("--force", is_flag=True, help="terminate every service first")
def cloud_teardown(force: bool) -> None:
    """Stop the managed store and remove the cloud (its data too)."""
    left = records.all_records()
    if left and not force:
        _fail(f"services still exist ({', '.join(r.name for r in left)}); terminate them or pass --force", 2)
    for r in left:
        service.terminate(r.name, _progress())
    cloud.teardown()
    out.print("cloud removed")


if __name__ == "__main__":
    main()
