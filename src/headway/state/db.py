"""The control plane's state: one SQLite file in the state dir (``state.db``, mode 0600).

Several processes write it (the CLI, the controller and its API): each write is one
transaction (``BEGIN IMMEDIATE``), the journal is WAL so readers never wait for a
writer, and a busy database is waited for rather than failed. A connection is opened
per operation — cheap, and safe across threads and forks.

The tables and their versions are ``schema``'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from headway.state import schema
from headway.system import paths

_ready: set[Path] = set()
_init_lock = threading.Lock()


def _init(conn: sqlite3.Connection, f: Path) -> None:
    """WAL and the schema (made, or migrated to this headway's), once per process, one
    process at a time: SQLite answers "database is locked" at once (no busy wait) to a
    journal-mode change racing another connection."""
    with _init_lock, open(f.with_name(f.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if f in _ready:
            return
        schema.prepare(conn, f)  # first: a database it refuses is left as it was
        conn.execute("PRAGMA journal_mode = WAL")
        _ready.add(f)


def path(home: Path | None = None) -> Path:
    return (home or paths.home()) / "state.db"


@contextlib.contextmanager
def connect(home: Path | None = None, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection; with ``write`` the block is one immediate transaction (committed on
    success, rolled back on an exception)."""
    f = path(home)
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(f, os.O_WRONLY | os.O_CREAT, 0o600))  # secrets inside: owner only
    conn = sqlite3.connect(f, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        if f not in _ready:
            _init(conn, f)
        if not write:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def get_token(scope: str, home: Path | None = None) -> str | None:
    with connect(home) as conn:
        row = conn.execute("SELECT token FROM tokens WHERE scope = ?", (scope,)).fetchone()
    return row[0] if row else None


def ensure_token(scope: str, make: str, home: Path | None = None) -> str:
    """The token of ``scope``; ``make`` is stored if there is none yet (first writer wins)."""
    with connect(home, write=True) as conn:
        conn.execute("INSERT OR IGNORE INTO tokens (scope, token) VALUES (?, ?)", (scope, make))
        return conn.execute("SELECT token FROM tokens WHERE scope = ?", (scope,)).fetchone()[0]


def api_token() -> str:
    """The API token: made at the control plane's first start, kept here."""
    return ensure_token("api", secrets.token_urlsafe(32))


def metrics_token() -> str:
    """A read-only token for ``/metrics`` only: Prometheus must not hold the key that can
    terminate services."""
    return ensure_token("metrics", secrets.token_urlsafe(32))


#: The scope suffix of a rotated-out token, accepted until its ``expires_at``.
PREVIOUS = "#previous"


def rotate_token(scope: str, new: str, grace_s: float, now: float, home: Path | None = None) -> float:
    """``new`` becomes ``scope``'s token; the one it replaces stays accepted until
    ``now + grace_s``, which is returned (a token rotated out before is forgotten)."""
    until = now + grace_s
    with connect(home, write=True) as conn:
        row = conn.execute("SELECT token FROM tokens WHERE scope = ?", (scope,)).fetchone()
        if row is not None:
            conn.execute(
                "INSERT OR REPLACE INTO tokens (scope, token, expires_at) VALUES (?, ?, ?)",
                (scope + PREVIOUS, row[0], until),
            )
        conn.execute("INSERT OR REPLACE INTO tokens (scope, token) VALUES (?, ?)", (scope, new))
    return until


def accepted_tokens(scope: str, now: float, home: Path | None = None) -> list[str]:
    """The current token of ``scope`` first, then a rotated-out one still in its grace period."""
    with connect(home) as conn:
        rows = conn.execute(
            "SELECT scope, token FROM tokens WHERE scope IN (?, ?) AND (expires_at IS NULL OR expires_at > ?)",
            (scope, scope + PREVIOUS, now),
        ).fetchall()
    return [token for s, token in sorted(rows, key=lambda r: r[0] != scope)]


def expired_rotations(now: float, home: Path | None = None) -> list[str]:
    """The scopes whose rotated-out token's grace period has ended (``accepted_tokens``
    leaves it out already; ``forget_rotated`` removes it once the endpoint knows)."""
    with connect(home) as conn:
        rows = conn.execute("SELECT scope FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return sorted(r[0].removesuffix(PREVIOUS) for r in rows.fetchall())


def forget_rotated(scope: str, home: Path | None = None) -> None:
    with connect(home, write=True) as conn:
        conn.execute("DELETE FROM tokens WHERE scope = ?", (scope + PREVIOUS,))


def copy_token(source: str, target: str, home: Path | None = None) -> None:
    """Give ``target`` the token of ``source`` (a rollout's new cluster becomes the service's)."""
    with connect(home, write=True) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO tokens (scope, token) SELECT ?, token FROM tokens WHERE scope = ?", (target, source)
        )


def set_secrets(service: str, values: dict[str, str], home: Path | None = None) -> None:
    with connect(home, write=True) as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO secrets (service, name, value) VALUES (?, ?, ?)",
            [(service, k, v) for k, v in values.items()],
        )


def secrets_of(service: str, home: Path | None = None) -> dict[str, str]:
    with connect(home) as conn:
        return dict(conn.execute("SELECT name, value FROM secrets WHERE service = ?", (service,)).fetchall())
