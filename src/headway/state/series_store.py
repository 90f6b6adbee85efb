"""The services' short histories (``plan.series``), in ``series.db`` beside ``state.db``.

A file of its own: a point every 10 s per service would make the state database (which
travels to a standby whenever it changes, ``state_snapshot``) change every 10 s. The
history is not state a new leader needs: it starts its own. Bounded by age
(``series.RETENTION_S``): each write prunes what is older.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headway.system import paths

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    service TEXT NOT NULL,
    t REAL NOT NULL,
    reading TEXT,                  -- the endpoint's cumulative counters then (JSON), for the next point
    point TEXT NOT NULL            -- what the API returns (JSON)
);
CREATE INDEX IF NOT EXISTS series_by_service ON series (service, t);
"""


def path(home: Path | None = None) -> Path:
    return (home or paths.home()) / "series.db"


@contextlib.contextmanager
def _connect(home: Path | None = None) -> Iterator[sqlite3.Connection]:
    f = path(home)
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(f, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(f, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.executescript(_SCHEMA)
        yield conn
    finally:
        conn.close()


def append(
    service: str,
    t: float,
    reading: dict[str, Any] | None,
    point: dict[str, Any],
    keep_s: float,
    home: Path | None = None,
) -> None:
    """Add a point; drop the service's points older than ``keep_s``."""
    with _connect(home) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO series (service, t, reading, point) VALUES (?, ?, ?, ?)",
            (service, t, json.dumps(reading) if reading is not None else None, json.dumps(point)),
        )
        conn.execute("DELETE FROM series WHERE service = ? AND t < ?", (service, t - keep_s))
        conn.execute("COMMIT")


def last_reading(service: str, home: Path | None = None) -> tuple[float, dict[str, Any] | None] | None:
    """The time and the counters of the service's last point, if it has one."""
    with _connect(home) as conn:
        row = conn.execute(
            "SELECT t, reading FROM series WHERE service = ? ORDER BY t DESC LIMIT 1", (service,)
        ).fetchone()
    if row is None:
        return None
    return row[0], json.loads(row[1]) if row[1] else None


def points(service: str, since: float, home: Path | None = None) -> list[dict[str, Any]]:
    with _connect(home) as conn:
        rows = conn.execute(
            "SELECT point FROM series WHERE service = ? AND t >= ? ORDER BY t", (service, since)
        ).fetchall()
    return [json.loads(r[0]) for r in rows]


def forget(service: str, home: Path | None = None) -> None:
    """A terminated service's history goes with it."""
    if path(home).exists():
        with _connect(home) as conn:
            conn.execute("DELETE FROM series WHERE service = ?", (service,))


def size_bytes(service: str, home: Path | None = None) -> int:
    """What the service's points take (their JSON), for the benchmark of the history's cost."""
    with _connect(home) as conn:
        row = conn.execute(
            "SELECT COALESCE(SUM(LENGTH(point) + COALESCE(LENGTH(reading), 0) + LENGTH(service) + 8), 0) "
            "FROM series WHERE service = ?",
            (service,),
        ).fetchone()
    return int(row[0])
