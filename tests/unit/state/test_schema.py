"""The state database's schema number and migrations, from a database the code before the
numbering wrote (``state_schema_1.sql``, dumped from a state dir that commit ca6aaba made
with its own functions: a service with nodes and a timeline, two versions, tokens, a secret)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from headway.control import versions
from headway.state import db, records, schema

FIXTURE = Path(__file__).with_name("state_schema_1.sql")


@pytest.fixture
def old_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state dir holding the fixture's database, as the old code left it."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    f = db.path(tmp_path)
    conn = sqlite3.connect(f)
    conn.executescript(FIXTURE.read_text())
    conn.close()
    os.chmod(f, 0o600)
    return f


def _number(f: Path) -> int:
    conn = sqlite3.connect(f)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def _tables(f: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        return rows.fetchall()
    finally:
        conn.close()


def _everything_intact() -> None:
    rec = records.load("shop")
    assert rec is not None and rec.state == "RUNNING" and rec.running_version == 2
    assert [n.name for n in rec.nodes] == ["head", "worker-1"]
    assert [e.kind for e in rec.events] == ["state", "head_failed", "state"]
    assert [(v.number, v.outcome) for v in versions.all_of("shop")] == [(1, "ran"), (2, "ran")]
    assert db.get_token("api") == "api-token-fixture" and db.get_token("service:shop") == "shop-token-fixture"
    assert db.secrets_of("shop") == {"STORE_PASSWORD": "s3cret-fixture"}


def test_the_old_database_is_numbered_and_kept_whole(old_state: Path) -> None:
    assert _number(old_state) == 0
    _everything_intact()
    assert _number(old_state) == schema.latest() == 2
    assert _number(old_state.with_name("state.db.before-2")) == 0  # the file as it was, kept
    assert any("expires_at" in sql for name, sql in _tables(old_state) if name == "tokens")  # schema 2


def test_a_new_database_has_the_tables_a_migrated_one_has(old_state: Path, tmp_path: Path) -> None:
    _everything_intact()  # migrates the fixture
    fresh = tmp_path / "fresh"
    db.get_token("api", fresh)
    assert _tables(db.path(fresh)) == _tables(old_state)
    assert _number(db.path(fresh)) == schema.latest()


def _add_column(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE tokens ADD COLUMN test_column REAL")


def test_a_migration_runs_once_after_a_copy_of_the_old_file(old_state: Path, monkeypatch) -> None:
    monkeypatch.setattr(schema, "MIGRATIONS", {2: _add_column})
    _everything_intact()
    assert _number(old_state) == 2
    assert any("test_column" in sql for name, sql in _tables(old_state) if name == "tokens")
    copy = old_state.with_name("state.db.before-2")
    assert _number(copy) == 0 and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not any("test_column" in sql for _, sql in _tables(copy))
    db._ready.discard(old_state)  # a second process: nothing is left to do, no error
    _everything_intact()
    assert _number(old_state) == 2


def test_a_failed_migration_leaves_the_database_as_it_was(old_state: Path, monkeypatch) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM secrets")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema, "MIGRATIONS", {2: broken})
    with pytest.raises(RuntimeError, match="migration bug"):
        db.get_token("api")
    assert _number(old_state) == 0  # as it was: not numbered, not migrated
    monkeypatch.setattr(schema, "MIGRATIONS", {})
    db._ready.discard(old_state)
    _everything_intact()  # the secret the broken step deleted is still there


def test_a_newer_schema_is_refused_untouched(old_state: Path) -> None:
    conn = sqlite3.connect(old_state)
    conn.execute(f"PRAGMA user_version = {schema.latest() + 1}")
    conn.close()
    before = old_state.read_bytes()
    with pytest.raises(schema.SchemaError, match=rf"schema {schema.latest() + 1}.*newer headway"):
        records.load("shop")
    assert old_state.read_bytes() == before
