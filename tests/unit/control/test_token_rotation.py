"""Rotating an endpoint token: what is refused, what is recorded (never a token), and how
grace periods end (a busy service is visited again). The endpoint's reload is counted here,
not run: the integration test ``test_ingress`` rotates under load through a real HAProxy."""

import pytest
from service_records import record

from headway.control import token_rotation
from headway.control.context import Context
from headway.ingress import endpoint
from headway.model.errors import InputError
from headway.state import db, locks, records
from headway.state.records import IngressRecord


@pytest.fixture
def reloads(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    seen: list[str] = []
    monkeypatch.setattr(endpoint, "apply_update", lambda crec, rec, spec: seen.append(rec.name) or "reloaded")
    return seen


def _served() -> None:
    rec = record("RUNNING")
    rec.ingress = IngressRecord(bind="127.0.0.1", port=1, config="c", socket="s", log="l")
    records.save(rec)
    endpoint.endpoint_token(rec.name)


def test_a_rotation_lets_both_in_for_the_grace_period_and_records_no_token(reloads) -> None:
    _served()
    old = endpoint.token("s")
    got = token_rotation.rotate(Context(None, clock=lambda: 1000.0), "s", grace_s=60)
    assert got["token"] != old and got["previous_accepted_until"] == 1060.0 and reloads == ["s"]
    assert db.accepted_tokens("service:s", now=1059.0) == [got["token"], old]
    timeline = records.load("s").events
    assert [e.kind for e in timeline] == ["token_rotated"]
    assert old not in str(timeline) and got["token"] not in str(timeline)


def test_what_is_refused(reloads) -> None:
    with pytest.raises(InputError, match="no service named s"):
        token_rotation.rotate(Context(None), "s")
    rec = record("RUNNING")
    records.save(rec)
    with pytest.raises(InputError, match="no endpoint yet"):
        token_rotation.rotate(Context(None), "s")
    rec.spec = rec.spec.model_copy(update={"query_auth_token_enabled": False})
    records.save(rec)
    with pytest.raises(InputError, match="needs no token"):
        token_rotation.rotate(Context(None), "s")
    with pytest.raises(InputError, match="not between 0 and"):
        token_rotation.rotate(Context(None), "s", grace_s=-1)
    assert reloads == []


def test_grace_periods_end_once_the_service_is_free(reloads) -> None:
    _served()
    token_rotation.rotate(Context(None, clock=lambda: 1000.0), "s", grace_s=10)
    assert token_rotation.expire(Context(None, clock=lambda: 1005.0)) == []  # not yet
    with locks.locked("s", "a deploy"):
        assert token_rotation.expire(Context(None, clock=lambda: 1011.0)) == []  # busy: next time
    assert db.expired_rotations(now=1011.0) == ["service:s"]
    assert token_rotation.expire(Context(None, clock=lambda: 1012.0)) == ["s"]
    assert reloads == ["s", "s"] and db.expired_rotations(now=1e12) == []
    assert [e.kind for e in records.load("s").events] == ["token_rotated", "token_expired"]
