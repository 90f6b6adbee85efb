"""Where headway keeps what it started: the state dir and short temp dirs.

Read from the environment at call time (never at import) so tests can point
``HEADWAY_HOME`` at a temp dir per test.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The state dir: ``$HEADWAY_HOME`` or ``~/.headway``."""
    env = os.environ.get("HEADWAY_HOME")
    root = Path(env) if env else Path.home() / ".headway"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def services_dir() -> Path:
    d = home() / "services"
    d.mkdir(parents=True, exist_ok=True)
    return d


def service_dir(name: str) -> Path:
    return services_dir() / name


def cloud_dir() -> Path:
    d = home() / "cloud"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def node_temp_root() -> Path:
    """Root for Ray temp dirs.

    Ray puts unix sockets under its temp dir and sockets have a ~107 byte path limit,
    so this stays short (``/tmp/hw``) unless ``HEADWAY_TMP`` says otherwise.
    """
    d = Path(os.environ.get("HEADWAY_TMP", "/tmp/hw"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically (secrets, state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
