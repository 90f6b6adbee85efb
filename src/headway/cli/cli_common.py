"""What every ``headway`` command shares: the consoles, the one way to fail (a readable
paragraph and the exit code, never a traceback, never a secret), the command group, and
talking to the control plane (start it, follow an operation, read through it or fall
back to the state dir)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click
from rich.console import Console
from rich.markup import escape

from headway.cli import client
from headway.control import context
from headway.state import daemon_info, records
from headway.state.records import ServiceRecord

out = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    # The message is text, not markup: "ray[serve]" must not be read as a style tag. What
    # went to stdout is flushed first, so the error never lands on its last line.
    out.file.flush()
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(code)


def _progress() -> context.Progress:
    start = time.monotonic()

    def show(msg: str) -> None:
        out.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {msg}", highlight=False)

    return show


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    return f"headway {of('headway')} (Ray {of('ray')}, Python {sys.version.split()[0]})"


@click.group()
@click.version_option(message=_versions(), help="Show headway's, Ray's and Python's versions.")
def main() -> None:
    """headway: Ray Serve services that survive the death of their head node."""


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
    out.print(f"[bold green]service {name}{version} is RUNNING[/] (controller {daemon_info.running_pid()} watches it)")
    if result.get("rollout"):
        out.print(f"version {result['rollout']} is rolling out beside it: 'headway rollout status {name}'")
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
