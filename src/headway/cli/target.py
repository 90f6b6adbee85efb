"""Which control plane the CLI talks to: this host's (found through the state dir), or a
remote one named by ``--api-url``, ``HEADWAY_API_URL`` or the current context of
``~/.config/headway/config.yaml``.

A remote target never starts a local control plane and never makes a state dir: the CLI
on an operator's laptop is an API client and nothing else. Its token comes from
``HEADWAY_API_TOKEN``, the file ``HEADWAY_API_TOKEN_FILE`` names, or the context's
``token_file``; its TLS CA from ``HEADWAY_API_CA`` or the context's ``ca`` (else the
system's CAs). The token is never printed, and never written into the config file.

The config file::

    current: prod
    contexts:
      prod: {api_url: "https://ctl.example.com:8765", token_file: ~/.config/headway/prod.token, ca: ~/ca.pem}
      local: {}        # an empty context: this host's control plane
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from headway.model.errors import InputError

CONTEXT_KEYS = ("api_url", "token_file", "ca")


class TargetError(InputError):
    """The remote control plane is named wrongly or without a token; the message says how to fix it."""


@dataclass(frozen=True)
class Remote:
    url: str
    token: str = field(repr=False)
    ca: str | None
    named_by: str  # where the URL came from, for messages


def config_path() -> Path:
    """``$HEADWAY_CONFIG``, else ``$XDG_CONFIG_HOME/headway/config.yaml`` (``~/.config``)."""
    if os.environ.get("HEADWAY_CONFIG"):
        return Path(os.environ["HEADWAY_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "headway" / "config.yaml"


def load_config() -> dict:
    """The config file as ``{"current": str | None, "contexts": {name: {...}}}``; an
    absent file is an empty config, a malformed one an error that names the file."""
    path = config_path()
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else None
    except (OSError, yaml.YAMLError) as exc:
        raise TargetError(f"{path}: cannot read it ({exc}); fix or remove the file") from None
    data = data or {}
    contexts = data.get("contexts") or {} if isinstance(data, dict) else None
    if not isinstance(contexts, dict):
        raise TargetError(f"{path}: expected 'current:' and a 'contexts:' mapping; fix or remove the file")
    for name, ctx in contexts.items():
        if not isinstance(ctx or {}, dict):
            raise TargetError(f"{path}: context {name}: expected a mapping of {', '.join(CONTEXT_KEYS)}")
        unknown = sorted(set(ctx or {}) - set(CONTEXT_KEYS))
        if unknown:
            raise TargetError(
                f"{path}: context {name}: unknown field(s) {', '.join(unknown)}; use {', '.join(CONTEXT_KEYS)}"
            )
    return {"current": data.get("current"), "contexts": {str(k): dict(v or {}) for k, v in contexts.items()}}


def save_config(config: dict) -> Path:
    """Write the config file, owner-only (it names token files and CAs)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def check_url(url: str, named_by: str) -> str:
    """``http(s)://host:port`` with nothing else: a path or credentials in it are a mistake."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{named_by}: {url!r} is not an http(s)://HOST:PORT address of a headway API")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise TargetError(f"{named_by}: give the API as http(s)://HOST:PORT only (no path, user or query)")
    return f"{parts.scheme}://{parts.netloc}"


def _read_token(path: str, named_by: str) -> str:
    f = Path(path).expanduser()
    try:
        token = f.read_text().strip()
    except OSError as exc:
        raise TargetError(f"{named_by}: cannot read the token file {f} ({exc.strerror})") from None
    if not token:
        raise TargetError(f"{named_by}: the token file {f} is empty")
    return token


def remote() -> Remote | None:
    """The remote control plane the environment or the current context names, or None
    (this host's). ``HEADWAY_CONTEXT`` (``--context``) picks a context for one command."""
    config = load_config()
    chosen = os.environ.get("HEADWAY_CONTEXT") or config["current"]
    ctx: dict = {}
    if chosen:
        if chosen not in config["contexts"]:
            known = ", ".join(sorted(config["contexts"])) or "none"
            raise TargetError(
                f"no context named {chosen} in {config_path()} (contexts: {known}); 'headway context list'"
            )
        ctx = config["contexts"][chosen]
    if os.environ.get("HEADWAY_API_URL"):
        url, named_by = os.environ["HEADWAY_API_URL"], "HEADWAY_API_URL"
    elif ctx.get("api_url"):
        url, named_by = ctx["api_url"], f"context {chosen}"
    else:
        return None
    url = check_url(url, named_by)
    if os.environ.get("HEADWAY_API_TOKEN"):
        token = os.environ["HEADWAY_API_TOKEN"].strip()
    elif os.environ.get("HEADWAY_API_TOKEN_FILE"):
        token = _read_token(os.environ["HEADWAY_API_TOKEN_FILE"], "HEADWAY_API_TOKEN_FILE")
    elif ctx.get("token_file"):
        token = _read_token(ctx["token_file"], f"context {chosen}")
    else:
        raise TargetError(
            f"{named_by} names {url}, but no API token is given: set HEADWAY_API_TOKEN or HEADWAY_API_TOKEN_FILE, "
            "or a token_file in the context ('headway api token' on the control host prints it)"
        )
    ca = os.environ.get("HEADWAY_API_CA") or ctx.get("ca")
    return Remote(url, token, str(Path(ca).expanduser()) if ca else None, named_by)
