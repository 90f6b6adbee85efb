"""The state database: records and timelines survive, in transactions, owner-only."""

import os
import stat
import threading

from headway.ingress import endpoint as ingress
from headway.model import states
from headway.state import db, records
from headway.state.records import NodeRecord, ServiceRecord

SPEC = {"name": "s", "applications": [{"import_path": "m:a"}]}


def _rec(name: str = "s") -> ServiceRecord:
    return ServiceRecord(
        name=name,
        cluster_id="c1",
        mode="netns",
        spec=SPEC,
        head_ip="10.0.0.2",
        gcs_port=6379,
        dashboard_port=8265,
        serve_port=8000,
    )


def test_record_round_trip_with_nodes_and_events(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = _rec()
    rec.nodes.append(NodeRecord(name="head", role="head", ip="10.0.0.2", temp_dir="/t", log="/l", marker="m"))
    rec.events.append(states.transition_event("STARTING", "RUNNING", "up"))
    records.save(rec)
    again = records.load("s")
    assert again is not None and again.head is not None and again.head.ip == "10.0.0.2"
    assert [e.state for e in again.events] == ["RUNNING"]
    assert stat.S_IMODE(os.stat(db.path()).st_mode) == 0o600


def test_events_are_appended_once_across_saves(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = _rec()
    for i in range(3):
        rec.events.append(states.Event(at=float(i), kind="note", state="RUNNING", message=str(i)))
        records.save(rec)
        records.save(rec)  # saving twice adds nothing
    assert [e.message for e in records.load("s").events] == ["0", "1", "2"]


def test_remove_forgets_record_events_and_token(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = _rec()
    rec.events.append(states.Event(at=1.0, kind="note", state="RUNNING"))
    records.save(rec)
    records.save(_rec("other"))
    tok = ingress.endpoint_token("s")
    assert ingress.endpoint_token("s") == tok  # kept across updates
    records.remove("s")
    assert records.load("s") is None and ingress.token("s") is None
    assert records.names() == ["other"]


def test_concurrent_writers_lose_nothing(tmp_path, monkeypatch):
    """Several writers at once (CLI, controller, API): every transaction lands."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    errors = []

    def writer(i: int) -> None:
        try:
            for j in range(10):
                rec = records.load(f"s{i}") or _rec(f"s{i}")
                rec.events.append(states.Event(at=float(j), kind="note", state="RUNNING", message=f"{i}.{j}"))
                records.save(rec)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert records.names() == [f"s{i}" for i in range(6)]
    assert all(len(records.load(f"s{i}").events) == 10 for i in range(6))


def test_a_rolled_back_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    try:
        with db.connect(write=True) as conn:
            conn.execute("INSERT INTO tokens (scope, token) VALUES ('x', 'y')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert db.get_token("x") is None


def test_a_rotated_token_is_accepted_for_its_grace_period_then_forgotten(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    scope = "service:s"
    db.ensure_token(scope, "first")
    assert db.accepted_tokens(scope, now=100.0) == ["first"]
    until = db.rotate_token(scope, "second", grace_s=60, now=100.0)
    assert until == 160.0 and db.get_token(scope) == "second"
    assert db.accepted_tokens(scope, now=159.0) == ["second", "first"]  # the current one first
    assert db.accepted_tokens(scope, now=160.0) == ["second"]
    db.rotate_token(scope, "third", grace_s=10, now=120.0)  # a second rotation forgets "first"
    assert db.accepted_tokens(scope, now=125.0) == ["third", "second"]
    assert db.expired_rotations(now=125.0) == []
    assert db.expired_rotations(now=131.0) == [scope]
    db.forget_rotated(scope)
    assert db.expired_rotations(now=131.0) == []
    assert db.accepted_tokens(scope, now=0.0) == ["third"]  # gone, whatever the clock says
    records.save(_rec())
    db.rotate_token(scope, "fourth", grace_s=600, now=200.0)
    records.remove("s")
    assert db.accepted_tokens(scope, now=0.0) == []  # terminate forgets the rotated-out one too
