"""Where headway keeps what it started: the state dir and short temp dirs.

Read from the environment at call time (never at import) so tests can point
``HEADWAY_HOME`` at a temp dir per test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError


class PathsError(InputError):
    pass


def private_dir(d: Path) -> Path:
    """Create ``d`` (mode 0700) or accept it only if this user owns it and nobody else may
    write it: a directory another local user created first (``/tmp/hw``) could hand our
    nodes their sockets, temp files and tokens."""
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = d.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PathsError(f"{d} is not a directory (a link?); remove it or choose another path")
    if st.st_uid != os.geteuid():
        raise PathsError(f"{d} belongs to another user (uid {st.st_uid}); remove it or choose another path")
    if st.st_mode & 0o022:
        os.chmod(d, 0o700)
    return d


def home() -> Path:
    """The state dir: ``$HEADWAY_HOME`` or ``~/.headway``; this user's own, 0700."""
    env = os.environ.get("HEADWAY_HOME")
    return private_dir(Path(env) if env else Path.home() / ".headway")


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
    so this stays short (``/tmp/hw<uid>``, this user's own and 0700) unless
    ``HEADWAY_TMP`` says otherwise.
    """
    return private_dir(Path(os.environ.get("HEADWAY_TMP", f"/tmp/hw{os.geteuid()}")))


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file readable by its owner only, atomically (secrets, state)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content.encode() if isinstance(content, str) else content)
    os.replace(tmp, path)
