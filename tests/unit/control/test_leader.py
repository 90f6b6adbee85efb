"""The controller lease's decision and the state snapshot a new leader restores (no store)."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from headway.control import leader
from headway.state import state_snapshot


def test_a_leader_acts_only_while_its_lease_holds():
    assert leader.decide(True, now=100.0, valid_until=110.0) == "act"
    # The store did not answer: act on until the lease would have run out, then pause.
    assert leader.decide(None, now=105.0, valid_until=110.0) == "act"
    assert leader.decide(None, now=110.0, valid_until=110.0) == "pause"
    # Another controller holds it (this one slept past its lease): stop, whatever the clock says.
    assert leader.decide(False, now=100.0, valid_until=110.0) == "stop"


def _state(home, key="k" * 64):
    (home / "services" / "svc" / "logs").mkdir(parents=True)
    (home / "services" / "svc" / "pkg").mkdir(parents=True)
    (home / "cloud" / "tls").mkdir(parents=True)
    (home / "cloud" / "snapshot.key").write_text(key)
    (home / "services" / "svc" / "store-ab12.password").write_text("pw")
    (home / "services" / "svc" / "logs" / "haproxy.log").write_text("x" * 1000)
    (home / "services" / "svc" / "haproxy.sock").write_text("")
    (home / "services" / "svc" / "pkg" / "working_dir-abc.zip").write_bytes(b"z" * 50_000)
    (home / "cloud" / "cloud.json").write_text("{}")
    (home / "cloud" / "tls" / "ca.pem").write_text("ca")
    (home / "controller.log").write_text("log")


def test_the_state_snapshot_carries_the_db_and_folders_but_no_logs_packages_or_key(tmp_path):
    home, other = tmp_path / "a", tmp_path / "b"
    _state(home)
    conn = sqlite3.connect(home / "state.db")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('kept')")
    conn.commit()  # still open: the snapshot copies it consistently (SQLite's backup)
    blob = state_snapshot.build(home)
    assert state_snapshot.build(home) == blob  # the same state gives the same bytes: written once
    assert len(blob) < 10_000, "a package travelled in the snapshot"
    conn.close()
    (other / "cloud").mkdir(parents=True)
    (other / "cloud" / "snapshot.key").write_text("k" * 64)  # the shared key, copied with the cloud folder
    (other / "state.db-wal").write_text("stale")
    state_snapshot.restore(blob, other)
    assert (other / "services" / "svc" / "store-ab12.password").read_text() == "pw"
    assert (other / "cloud" / "tls" / "ca.pem").read_text() == "ca"
    assert not (other / "services" / "svc" / "logs").exists() and not (other / "controller.log").exists()
    assert not (other / "services" / "svc" / "haproxy.sock").exists() and not (other / "state.db-wal").exists()
    assert not (other / "services" / "svc" / "pkg").exists()
    assert sqlite3.connect(other / "state.db").execute("SELECT v FROM t").fetchall() == [("kept",)]
    for f in (other / "services" / "svc" / "store-ab12.password", other / "cloud" / "cloud.json", other / "state.db"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((other / "services").stat().st_mode) == 0o700


def test_a_snapshot_not_signed_with_the_shared_key_is_refused_and_nothing_unpacked(tmp_path):
    home, other = tmp_path / "a", tmp_path / "b"
    _state(home, key="a" * 64)
    (other / "cloud").mkdir(parents=True)
    (other / "cloud" / "snapshot.key").write_text("b" * 64)
    blob = state_snapshot.build(home)
    with pytest.raises(state_snapshot.SnapshotRefused, match="not signed with this controller's"):
        state_snapshot.restore(blob, other)
    (other / "cloud" / "snapshot.key").write_text("a" * 64)
    forged = blob[:-1] + bytes([blob[-1] ^ 1])  # one bit of the body changed
    with pytest.raises(state_snapshot.SnapshotRefused):
        state_snapshot.restore(forged, other)
    assert sorted(p.name for p in other.rglob("*")) == ["cloud", "snapshot.key"]


def test_the_fingerprint_moves_with_the_state_and_only_then(tmp_path):
    home = tmp_path / "a"
    _state(home)
    first = state_snapshot.fingerprint(home)
    assert state_snapshot.fingerprint(home) == first
    (home / "services" / "svc" / "logs" / "haproxy.log").write_text("more log")  # not in a snapshot
    assert state_snapshot.fingerprint(home) == first
    (home / "services" / "svc" / "store-ab12.password").write_text("pw2")
    assert state_snapshot.fingerprint(home) != first


def test_a_standby_api_sends_callers_to_the_leader_and_never_fails():
    from headway.control import standby_api

    moved = standby_api.reply("GET /api/services/x?y=1 HTTP/1.1", "https://10.0.0.3:8765").decode()
    assert moved.startswith("HTTP/1.1 307 Temporary Redirect\r\n")
    assert "\r\nLocation: https://10.0.0.3:8765/api/services/x?y=1\r\n" in moved
    assert '"leader": "https://10.0.0.3:8765"' in moved
    waiting = standby_api.reply("POST /api/deploy HTTP/1.1", None).decode()
    assert waiting.startswith("HTTP/1.1 503 ") and "Retry-After: 2" in waiting and "no leader" in waiting
    for junk in ("", "\x16\x03\x01", "GET", "GET http://evil/ HTTP/1.1", "GET / SMTP"):
        assert standby_api.reply(junk, "https://10.0.0.3:8765").startswith(b"HTTP/1.1 400 ")


def test_a_standby_redirects_only_to_a_well_formed_controller_url():
    from headway.control.standby_api import leader_target

    ctl = {"10.1.0.3", "ctl.example"}
    assert leader_target("https://10.1.0.3:8765", ctl) == "https://10.1.0.3:8765"
    assert leader_target("http://ctl.example:8765/", ctl) == "http://ctl.example:8765"
    for bad in (
        "https://evil.example:8765",
        "https://10.1.0.3:8765/x",
        "https://u:p@10.1.0.3:8765",
        "https://10.1.0.3",
        "ftp://10.1.0.3:21",
        "https://10.1.0.3:8765\r\nSet-Cookie: a=b",
        "https://10.1.0.3:8765?q=1",
        "javascript:alert(1)",
        "",
        None,
        "https://10.1.0.3:99999",
    ):
        assert leader_target(bad, ctl) is None, bad
    assert leader_target("https://203.0.113.9:8765", set()) == "https://203.0.113.9:8765"  # no list: form only
