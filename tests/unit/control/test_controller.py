"""The controller's round, with no Ray: what it decides from the records it reads."""

import pytest
from service_records import record

from headway.control import controller
from headway.control.context import Context
from headway.model import errors, states
from headway.plan import watchdog
from headway.state import records
from headway.state.records import NodeRecord
from headway.state.transitions import set_state

REPLACING_THE_HEAD = controller._DOING[watchdog.Action.RECOVER_HEAD]


class _Alive:
    def __init__(self, seen: bool | None = True):
        self.seen = seen

    def alive(self, node) -> bool:
        return True

    def alive_or_unknown(self, node) -> bool | None:
        return self.seen


class _EndsWhenAsked:
    """A head replacement that finishes exactly when the round asks whether it still runs."""

    def __init__(self, name: str):
        self.name = name

    def is_alive(self) -> bool:
        rec = records.load(self.name)
        set_state(rec, states.State.RUNNING, "head replaced")
        return False


@pytest.fixture
def recovering(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    rec.nodes.append(NodeRecord(name="head", role="head", ip="10.0.0.2", temp_dir="/t", log="/l", marker="m"))
    set_state(rec, states.State.HEAD_RECOVERING, "head lost: head is down", lost_at=1.0)
    monkeypatch.setattr(Context, "load", classmethod(lambda cls: cls(None, providers=lambda c, r=None: _Alive())))
    monkeypatch.setattr(controller.gcs_client, "healthy", lambda addr, token, timeout_s: True)
    return rec


def test_a_repair_that_ends_during_the_round_is_not_started_again(recovering):
    """Finished repairs are pruned before the records are read: read first, the service
    would be judged HEAD_RECOVERING and its just-replaced head replaced a second time."""
    ctl = controller.Controller()
    started = []
    ctl._start = lambda name, what, fn: started.append((name, what))
    ctl.active["s"] = _EndsWhenAsked("s")
    ctl.round()
    assert REPLACING_THE_HEAD not in [what for _, what in started] and records.load("s").state == "RUNNING"


def test_a_head_recovery_left_unfinished_is_resumed(recovering):
    ctl = controller.Controller()
    started = []
    ctl._start = lambda name, what, fn: started.append((name, what))
    ctl.round()
    assert started == [("s", REPLACING_THE_HEAD)]  # HEAD_RECOVERING with no repair running: resumed


FINISHING = controller._DOING[watchdog.Action.FINISH_RECOVERY]


def _unhealthy(monkeypatch, reason: str, seen: bool | None = True, gcs_healthy: bool = True) -> list:
    rec = records.load("s")
    if rec.state != states.State.UNHEALTHY:
        set_state(rec, states.State.UNHEALTHY, reason)
    rec.reason = reason
    records.save(rec)
    monkeypatch.setattr(Context, "load", classmethod(lambda cls: cls(None, providers=lambda c, r=None: _Alive(seen))))
    monkeypatch.setattr(controller.gcs_client, "healthy", lambda addr, token, timeout_s: gcs_healthy)
    ctl = controller.Controller()
    started: list = []
    ctl._start = lambda name, what, fn: started.append(what)
    ctl.round()
    return started


def test_a_head_replacement_that_failed_after_its_head_came_up_is_finished(recovering, monkeypatch):
    reason = f"{controller.HEAD_REPLACEMENT_FAILED}: cannot fence node worker-1: host 10.0.0.3: SSH unreachable"
    assert _unhealthy(monkeypatch, reason) == [FINISHING]


def test_unhealthy_for_another_reason_or_a_head_not_seen_is_left_alone(recovering, monkeypatch):
    assert _unhealthy(monkeypatch, "the update failed; no earlier version to roll back to") == []
    # Its host did not answer the look; its GCS does: no repair, and never a new head.
    assert _unhealthy(monkeypatch, f"{controller.HEAD_REPLACEMENT_FAILED}: x", seen=None) == []


def test_finishing_a_replacement_keeps_the_head_and_a_failure_is_retried_later(recovering, monkeypatch):
    """The repair the round starts for it finishes with the live head (no new head); when
    that fails too, the service is UNHEALTHY for the same reason, finished again later."""
    reason = f"{controller.HEAD_REPLACEMENT_FAILED}: replicas not back"
    rec = records.load("s")
    set_state(rec, states.State.UNHEALTHY, reason)
    monkeypatch.setattr(Context, "load", classmethod(lambda cls: cls(None, providers=lambda c, r=None: _Alive())))
    calls = []
    monkeypatch.setattr(controller.repair, "recover_head", lambda *a, **k: calls.append("recover_head"))

    def finish(ctx, rec, progress):
        calls.append("finish_recovery")
        raise errors.DeployError("replicas of hello not back within 120 s")

    monkeypatch.setattr(controller.repair, "finish_recovery", finish)
    ctl = controller.Controller()
    repairs = []
    ctl._start = lambda name, what, fn: repairs.append(fn)
    ctl.round()
    (fn,) = repairs
    fn(Context.load(), records.load("s"))
    after = records.load("s")
    assert calls == ["finish_recovery"] and after.state == "UNHEALTHY"
    assert after.reason.startswith(controller.HEAD_REPLACEMENT_FAILED) and "replicas of hello not back" in after.reason
