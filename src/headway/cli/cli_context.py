"""``headway context``: name the control planes this CLI talks to (as kubectl's contexts),
kept in ``~/.config/headway/config.yaml`` (``cli.target`` reads it)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from headway.cli.cli_common import _emit, _fail, json_option, main, out


@main.group("context")
def context_group() -> None:
    """Named control planes: 'headway context use prod' sends every command to prod's API."""


@context_group.command("add")
@click.argument("name")
@click.option("--api-url", required=True, metavar="URL", help="the control plane's API: http(s)://HOST:PORT")
@click.option(
    "--token-file",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="a file holding its API token ('headway api token' on the control host prints it)",
)
@click.option("--ca", default=None, type=click.Path(dir_okay=False, exists=True), help="the CA of its TLS certificate")
@click.option("--use", "use_it", is_flag=True, help="make it the current context")
def context_add(name: str, api_url: str, token_file: str, ca: str | None, use_it: bool) -> None:
    """Add (or replace) a context; the token stays in its file, the config names the file."""
    from headway.cli import target

    if not name.replace("-", "").replace("_", "").isalnum():
        _fail(f"{name!r} is not a context name; use letters, digits, '-' and '_'", 2)
    config = target.load_config()
    entry = {"api_url": target.check_url(api_url, "--api-url"), "token_file": str(Path(token_file).resolve())}
    if ca:
        entry["ca"] = str(Path(ca).resolve())
    config["contexts"][name] = entry
    if use_it:
        config["current"] = name
    path = target.save_config(config)
    out.print(f"context {name} → {entry['api_url']} ({path}){'; in use' if use_it else ''}", highlight=False)


@context_group.command("use")
@click.argument("name")
def context_use(name: str) -> None:
    """Send every command to this context's control plane ('local': this host's)."""
    from headway.cli import target

    config = target.load_config()
    if name != "local" and name not in config["contexts"]:
        known = ", ".join(sorted(config["contexts"])) or "none yet: 'headway context add'"
        _fail(f"no context named {name} (contexts: {known})", 2)
    config["current"] = None if name == "local" else name
    target.save_config(config)
    out.print(f"using context {name}", highlight=False)


@context_group.command("list")
@json_option
def context_list(as_json: bool) -> None:
    """The contexts, and which one is in use (none: this host's control plane)."""
    from headway.cli import target

    config = target.load_config()
    rows = [
        {"name": n, "current": n == config["current"], **{k: c.get(k) for k in target.CONTEXT_KEYS}}
        for n, c in sorted(config["contexts"].items())
    ]
    if _emit({"current": config["current"], "contexts": rows}, as_json):
        return
    t = Table("", "context", "API", "token file", "CA")
    for r in rows:
        t.add_row("*" if r["current"] else "", r["name"], r["api_url"] or "", r["token_file"] or "", r["ca"] or "")
    out.print(t)
    if config["current"] is None:
        out.print("in use: this host's control plane (no context)")


@context_group.command("remove")
@click.argument("name")
def context_remove(name: str) -> None:
    """Forget a context (its token file is left alone)."""
    from headway.cli import target

    config = target.load_config()
    if config["contexts"].pop(name, None) is None:
        _fail(f"no context named {name}", 2)
    if config["current"] == name:
        config["current"] = None
    target.save_config(config)
    out.print(f"context {name} removed", highlight=False)
