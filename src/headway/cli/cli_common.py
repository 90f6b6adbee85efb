"""What every ``headway`` command shares: the consoles, the one way to fail (a readable
paragraph and the exit code, never a traceback, never a secret), the command group, and
talking to the control plane (start it, follow an operation, read through it or fall
back to the state dir).

The CLI loads what lies below it only inside the command that needs it (the API client,
``cli.local``'s fallbacks): ``headway --help`` and tab completion must not wait for Ray,
SSH, the store's client or an HTTP stack to load. ``test_cli_startup`` holds it to that.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar
from urllib.parse import quote

import click
from rich.console import Console
from rich.markup import escape

from headway.model.errors import HeadwayError

T = TypeVar("T")

#: Piped or redirected output is not wrapped: a script or a file gets whole lines.
out = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


def api_path(*parts: str) -> str:
    """An API path whose parts are sent as they are: a name holding '/', '?' or '#' stays
    one part (``storage cleanup 'hw-x??'`` must not become ``hw-x`` and a query)."""
    return "/api/" + "/".join(quote(part, safe="") for part in parts)


def _json_requested(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """With ``--json`` stdout holds the JSON alone: progress and notes go to stderr."""
    if value:
        out.file = sys.stderr
    return value


#: ``--json`` of every command that prints a result.
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    callback=_json_requested,
    help="the result as JSON on stdout (progress and notes go to stderr)",
)


def _emit(result: object, as_json: bool) -> bool:
    """Print the result as JSON when ``--json`` asked for it; whether it did."""
    if as_json:
        click.echo(json.dumps(result, indent=2))
    return as_json


def _fail(message: str, code: int = 1) -> None:
    # The message is text, not markup: "ray[serve]" must not be read as a style tag. What
    # went to stdout is flushed first, so the error never lands on its last line.
    out.file.flush()
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(code)


def _progress() -> Callable[[str], None]:
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


class _Commands(click.Group):
    """The command group: an error headway raises on purpose ends any command as one
    paragraph with its exit code, wherever it came from (the state dir, a check, a read)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HeadwayError as exc:
            _fail(str(exc), exc.exit_code)


@click.group(cls=_Commands)
@click.version_option(message=_versions(), help="Show headway's, Ray's and Python's versions.")
@click.option(
    "--api-url",
    default=None,
    metavar="URL",
    help="a remote control plane's API (else $HEADWAY_API_URL, the current context, or this host's)",
)
@click.option(
    "--context", "context_name", default=None, metavar="NAME", help="a context of the config file, for this command"
)
def main(api_url: str | None, context_name: str | None) -> None:
    """headway: Ray Serve services that survive the death of their head node."""
    if api_url:
        os.environ["HEADWAY_API_URL"] = api_url  # one place reads the target: cli.target
    if context_name:
        os.environ["HEADWAY_CONTEXT"] = context_name


def _remote() -> bool:
    """Whether the commands go to another host's control plane (``cli.target``)."""
    from headway.cli import target

    return target.remote() is not None


def _on_control_host(what: str) -> None:
    """Refuse a command that starts or stops processes here when a remote control plane is
    the target: it would act on this host, not on the one the operator means."""
    if _remote():
        _fail(f"{what} runs on the control host itself (it starts or stops processes there); run it there", 2)


def _complete_service(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Tab completion of a service's name from the state dir, which it never creates."""
    from headway.state import db, records
    from headway.system import paths

    if not db.path(paths.home_path()).exists():
        return []
    return [n for n in records.names() if n.startswith(incomplete)]


#: The NAME argument of every command about one service (tab completes the names).
service_name = click.argument("name", shell_complete=_complete_service)


def _change(method: str, path: str, **kwargs) -> dict:
    """Ask the control plane for a change, print its progress, return its result (or fail
    with the operation's exit code)."""
    from headway.cli import client

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
    watched = ""
    if not _remote():
        from headway.state import daemon_info

        watched = f" (controller {daemon_info.running_pid()} watches it)"
    out.print(f"[bold green]service {name}{version} is RUNNING[/]{watched}")
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


def _via_api(method: str, path: str, local: Callable[[ModuleType], T], **kwargs) -> T:
    """Through the control plane when it runs; else ``local(cli.local)``, straight from the
    state dir (the control code loads only then). Its errors end the command by their type."""
    from headway.cli import client

    api_client = client.running()
    if api_client is not None:
        try:
            return api_client.call(method, path, **kwargs)
        except client.ApiError as exc:
            # a real answer (unknown service ...), or a remote control plane: no state dir here
            if exc.exit_code != 1 or api_client.remote:
                _fail(str(exc), exc.exit_code)
    from headway.cli import local as state_dir

    try:
        return local(state_dir)
    except HeadwayError as exc:
        _fail(str(exc), exc.exit_code)
