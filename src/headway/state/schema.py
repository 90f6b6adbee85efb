"""The state database's tables, and how a database an older headway wrote becomes them.

SQLite's ``user_version`` numbers the schema. Headway before the numbering wrote schema 1
and left the number at 0. A new database is made as schema 1 and then migrated like any
other, so a made and a migrated one cannot differ. Each migration takes the database one
number up in one transaction, after a copy of the file was kept beside it
(``state.db.before-N``, owner-only: it holds tokens). A database numbered higher than this
headway knows is refused before anything reads it: an older headway must not write a
schema it does not know (docs/upgrading.md).

Tables: ``services`` (the service record: desired spec, nodes, ingress, state),
``events`` (the timeline, append-only, one row per event), ``tokens`` (the API token and
each service's endpoint token; since schema 2 a rotated-out token with its expiry),
``versions`` (every version of a service), ``secrets``
(environment values a deploy was given).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from headway.model.errors import Failed

SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL,          -- ServiceRecord as JSON, without its events
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL             -- states.Event as JSON
);
CREATE INDEX IF NOT EXISTS events_by_service ON events (service, id);
CREATE TABLE IF NOT EXISTS tokens (
    scope TEXT PRIMARY KEY,        -- 'api', 'metrics', 'service:<name>' (endpoint), 'ray:<name>' (Ray's)
    token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    service TEXT NOT NULL,
    number INTEGER NOT NULL,       -- 1, 2, ... per service
    name TEXT,                     -- the spec's version_name, if any
    spec TEXT NOT NULL,            -- the validated spec (JSON)
    package_uri TEXT,              -- the working_dir package it runs (kept for rollback)
    digest TEXT NOT NULL,          -- of spec and package: tells two deploys apart
    origin TEXT NOT NULL,          -- deploy | scale | rollback to N
    created_at REAL NOT NULL,
    outcome TEXT NOT NULL,         -- pending | ran (reached RUNNING) | failed | interrupted
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (service, number)
);
CREATE TABLE IF NOT EXISTS secrets (
    service TEXT NOT NULL,         -- environment values a deploy handed over (store passwords):
    name TEXT NOT NULL,            -- repairs need them after the CLI that had them is gone
    value TEXT NOT NULL,
    PRIMARY KEY (service, name)
);
"""

Migration = Callable[[sqlite3.Connection], None]


def _token_expiry(conn: sqlite3.Connection) -> None:
    """2: a token may expire (a rotated-out endpoint token is accepted for a grace period)."""
    conn.execute("ALTER TABLE tokens ADD COLUMN expires_at REAL")


#: number N → what takes a schema N-1 database to N (inside the transaction that numbers it).
MIGRATIONS: dict[int, Migration] = {2: _token_expiry}


class SchemaError(Failed):
    """The state database cannot be used by this headway; the message says why."""


def latest() -> int:
    return max(MIGRATIONS, default=1)


def version_of(conn: sqlite3.Connection) -> int:
    """The schema's number; 0 is a database that has no table yet."""
    number = conn.execute("PRAGMA user_version").fetchone()[0]
    if number:
        return number
    has_tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'services'").fetchone()
    return 1 if has_tables else 0


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Make the tables, or bring them to ``latest()``; refuse a newer schema."""
    number, target = version_of(conn), latest()
    if number > target:
        raise SchemaError(
            f"{path} has state schema {number}, and this headway knows schema {target} at most: "
            "it was written by a newer headway. Run that version (or newer); nothing was changed"
        )
    if number == 0:
        conn.executescript(SCHEMA_1)
    elif number < target:
        _keep_copy(conn, path, number)
    for step in range(max(number, 1) + 1, target + 1):
        _migrate(conn, step)
    conn.execute(f"PRAGMA user_version = {target}")


def _migrate(conn: sqlite3.Connection, number: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        MIGRATIONS[number](conn)
        conn.execute(f"PRAGMA user_version = {number}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _keep_copy(conn: sqlite3.Connection, path: Path, number: int) -> None:
    """The database as it was, beside it, before the first migration touches it."""
    copy = path.with_name(f"{path.name}.before-{number + 1}")
    os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    target = sqlite3.connect(copy)
    try:
        conn.backup(target)
    finally:
        target.close()
