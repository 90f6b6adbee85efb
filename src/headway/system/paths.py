"""Where headway keeps what it started: the state dir and short temp dirs.

Read from the environment at call time (never at import) so tests can point
``HEADWAY_HOME`` at a temp dir per test.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from headway.model.errors import InputError


class PathsError(InputError):
    pass


def private_dir(d: Path, mode: int = 0o700) -> Path:
    """Create ``d`` (``mode``: 0700, or 0711 where node users must pass through) or accept
    it only if this user owns it: a directory another local user created first
    (``/tmp/hw``) could hand our nodes their sockets, temp files and tokens."""
    d.mkdir(parents=True, exist_ok=True, mode=mode)
    st = d.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise PathsError(f"{d} is not a directory (a link?); remove it or choose another path")
    if st.st_uid != os.geteuid():
        raise PathsError(f"{d} belongs to another user (uid {st.st_uid}); remove it or choose another path")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(d, mode)
    return d


def home_path() -> Path:
    """Where the state dir is: ``$HEADWAY_HOME`` or ``~/.headway`` (it may not exist)."""
    env = os.environ.get("HEADWAY_HOME")
    return Path(env) if env else Path.home() / ".headway"


def home() -> Path:
    """The state dir, made if missing: this user's own, 0700."""
    return private_dir(home_path())


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
    so this stays short (``/tmp/hw<uid>``, this user's own) unless ``HEADWAY_TMP`` says
    otherwise. Mode 0711: the nodes' users pass through to their own temp dirs (each
    0770 for its service's group, ``node_dir``) but cannot list it; everything else in it
    is 0700 and this user's.
    """
    return private_dir(Path(os.environ.get("HEADWAY_TMP", f"/tmp/hw{os.geteuid()}")), 0o711)


def node_dir(d: Path, gid: int | None, mode: int) -> Path:
    """A node's temp dir, 0700; when the node is boxed in, ``mode`` for its service's group
    ``gid`` (``node_user.TEMP_DIR_MODE``). Made new, or refused when something else
    stands at its path."""
    try:
        d.mkdir(mode=0o700)
    except FileExistsError:
        st = d.lstat()
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise PathsError(f"{d} is not a directory (a link?); remove it") from None
    if gid is not None:
        os.chown(d, -1, gid, follow_symlinks=False)
        os.chmod(d, mode)
    return d


def write_private(path: Path, content: str | bytes, owner: tuple[int, int] | None = None) -> None:
    """Write a file readable by its owner only (``owner``: uid, gid; default this user),
    atomically: a new file (``O_EXCL|O_NOFOLLOW``, never a link someone planted), 0600
    from its first byte and owned before anything is written, then moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a crashed write's leftover (the folder is ours)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        if owner is not None:
            os.fchown(fh.fileno(), *owner)
        fh.write(content.encode() if isinstance(content, str) else content)
    os.replace(tmp, path)
