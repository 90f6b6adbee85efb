"""Updates and scaling wait for the head: refused while it recovers or does not answer."""

import pytest
from service_records import record

from headway.control import head_guard
from headway.control.context import Context
from headway.model import errors, states
from headway.state.records import NodeRecord


class _AliveProvider:
    """Every node's processes run (what the guard asks before it asks the GCS)."""

    def alive(self, node) -> bool:
        return True


def test_update_refused_while_the_head_recovers(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    lost_at = 1_000_000.0
    rec.events.append(states.transition_event("RUNNING", "HEAD_RECOVERING", "head lost", lost_at=lost_at))
    rec.state = "HEAD_RECOVERING"
    with pytest.raises(errors.HeadRecovering) as exc:
        head_guard.refuse_while_recovering(Context(None, clock=lambda: lost_at + 12.4), rec)
    msg = str(exc.value)
    assert "head node of service s is recovering (12 s)" in msg
    assert "retry, or pass --wait" in msg


def test_no_refusal_without_gcs_ft_or_when_running_without_nodes(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    head_guard.refuse_while_recovering(Context(None), record("HEAD_RECOVERING", gcs_ft=False))
    head_guard.refuse_while_recovering(Context(None), record("RUNNING"))  # no head recorded: nothing to wait for


def test_update_refused_when_a_live_head_does_not_answer(tmp_path, monkeypatch):
    """A frozen head (processes alive, GCS silent) must not take an update: it would hang."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    rec.nodes.append(NodeRecord(name="head", role="head", ip="10.0.0.2", temp_dir="/t", log="/l", marker="m"))
    alive = Context(None, providers=lambda crec, rec: _AliveProvider())  # its processes live
    asked = []
    monkeypatch.setattr(head_guard.gcs_client, "healthy", lambda addr, token, t: asked.append(addr) or False)
    with pytest.raises(errors.HeadRecovering, match="does not answer its health check"):
        head_guard.refuse_while_recovering(alive, rec)
    assert asked == [f"10.0.0.2:{rec.gcs_port}"] * 2  # its GCS asked twice before refusing
    monkeypatch.setattr(head_guard.gcs_client, "healthy", lambda addr, token, t: True)
    head_guard.refuse_while_recovering(alive, rec)
