"""The leader's state as it travels through the store to a standby: built only when the
state changed, signed with a key the controllers share and the store never holds, and
without packages (those travel once each, on their own).

- What: ``state.db`` as one consistent copy (SQLite's backup) and the service and cloud
  folders — never logs, sockets, PID files, packages or the signing key.
- When: a fingerprint of the folder (names, sizes, modification times) is taken every
  round, for the cost of a few ``stat`` calls; the snapshot is built only when it moved
  (a 50 MB package in the snapshot made every round 1.9 s longer).
- Signed: HMAC-SHA256 with ``cloud/snapshot.key`` (made at ``cloud setup``, copied to a
  standby with the rest of the cloud folder, left out of every snapshot). Whoever can
  write the store (the admin password) cannot hand a standby a state of their own: a
  snapshot whose signature does not match is refused before a byte of it is unpacked.
- Restored 0600 (folders 0700), whatever the archive said.
- Packages: each ``services/<name>/pkg/*.zip`` is stored once under its own key (named by
  content); a new leader fetches what its folder lacks.
- Its size is kept in ``snapshot.json`` beside ``state.db`` (``cloud status``, metrics).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import io
import json
import os
import secrets
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from headway.system import paths

MAGIC = b"HWS1"
KEY_FILE = "snapshot.key"
SIZE_FILE = "snapshot.json"
#: What the state folder holds that a new leader does not need, or must not get.
_SKIP_SUFFIXES = (".log", ".sock", ".pid", ".lock", ".init-lock", "-wal", "-shm", ".part", ".zip", ".tmp")
_SKIP_NAMES = (KEY_FILE,)


class SnapshotRefused(Exception):
    """A snapshot whose signature does not match this controller's key."""


def key(home: Path) -> bytes:
    """The signing key the controllers share (``cloud/snapshot.key``), made if missing."""
    path = home / "cloud" / KEY_FILE
    if not path.exists():
        paths.write_private(path, secrets.token_hex(32))
    return path.read_text().strip().encode()


def fingerprint(home: Path) -> str:
    """Names, sizes and modification times of what a snapshot would hold, and of the
    packages (they travel beside it): changes whenever either does, for a few stat calls."""
    h = hashlib.sha256()
    for f in ("state.db", "state.db-wal"):
        with contextlib.suppress(FileNotFoundError):
            st = (home / f).stat()
            h.update(f"{f} {st.st_size} {st.st_mtime_ns}\n".encode())
    for folder in ("cloud", "services"):
        for root, dirs, files in os.walk(home / folder):
            dirs.sort()
            for name in sorted(files):
                if _kept(name, f"{root}/") or name.endswith(".zip"):
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(os.path.join(root, name))
                        h.update(f"{root}/{name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build(home: Path) -> bytes:
    """The signed snapshot of the state folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar, tempfile.TemporaryDirectory() as tmp:
        db_file = home / "state.db"
        if db_file.exists():
            copy = Path(tmp) / "state.db"
            src, dst = sqlite3.connect(db_file), sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            tar.add(copy, "state.db", filter=_clean)
        for folder in ("cloud", "services"):
            if (home / folder).is_dir():
                tar.add(home / folder, folder, filter=_clean)
    body = gzip.compress(buf.getvalue(), mtime=0)  # the same state, the same bytes
    return MAGIC + hmac.new(key(home), body, hashlib.sha256).digest() + body


def restore(blob: bytes, home: Path) -> None:
    """Unpack a snapshot into ``home``, files 0600 and folders 0700; SnapshotRefused when it
    is not signed with this controller's key (nothing is unpacked then)."""
    sig, body = blob[len(MAGIC) : len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
    if not blob.startswith(MAGIC) or not hmac.compare_digest(sig, hmac.new(key(home), body, hashlib.sha256).digest()):
        raise SnapshotRefused(
            "the state snapshot in the store is not signed with this controller's cloud/snapshot.key: refused "
            "(copy the leader's cloud folder, key included, to this host)"
        )
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body)), mode="r:") as tar:
        names = tar.getnames()
        tar.extractall(home, filter="data")
    for name in names:
        target = home / name
        if target.is_dir() and not target.is_symlink():
            target.chmod(0o700)
        elif target.is_file() and not target.is_symlink():
            target.chmod(0o600)
    for f in ("state.db-wal", "state.db-shm"):
        (home / f).unlink(missing_ok=True)


def packages(home: Path) -> dict[str, Path]:
    """Every package of the state folder, by its name in the store (``<service>/<file>``)."""
    found = {}
    for pkg in sorted((home / "services").glob("*/pkg/*.zip")):
        found[f"{pkg.parent.parent.name}/{pkg.name}"] = pkg
    return found


def save_package(home: Path, name: str, data: bytes) -> None:
    service, _, file = name.partition("/")
    if not file or "/" in file or service in ("", ".", "..") or not file.endswith(".zip"):
        return  # not a name this module stored
    paths.write_private(home / "services" / service / "pkg" / file, data)


def record_size(home: Path, snapshot_bytes: int, package_bytes: int) -> None:
    paths.write_private(home / SIZE_FILE, json.dumps({"bytes": snapshot_bytes, "package_bytes": package_bytes}))


def size(home: Path | None = None) -> dict | None:
    """The last snapshot's size as the leader wrote it (None: this controller wrote none)."""
    try:
        return json.loads(((home or paths.home()) / SIZE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _kept(name: str, where: str) -> bool:
    return not name.endswith(_SKIP_SUFFIXES) and name not in _SKIP_NAMES and "/logs/" not in where


def _clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name
    base = name.rsplit("/", 1)[-1]
    if not _kept(base, f"/{name}/") or "/pkg/" in f"/{name}/" or not (info.isfile() or info.isdir()):
        return None
    info.mtime = 0
    return info
