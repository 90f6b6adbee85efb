"""When ``rollout status --wait`` (and ``deploy --wait-rollout``) stop, and with which exit
code, from the status the control plane reports."""

from headway.cli.cli_rollout import wait_outcome


def _st(rollout=None, last=None) -> dict:
    return {"name": "s", "rollout": rollout, "last": last}


def _ro(**kw) -> dict:
    return {"version": 3, "percent": 25, "paused": None, "last": "", "held_for_promote": False} | kw


def test_a_rollout_in_progress_keeps_the_wait_going() -> None:
    assert wait_outcome(_st(_ro())) is None
    assert wait_outcome(_st(_ro(paused="a head is down"))) is None


def test_the_end_decides_the_code() -> None:
    done = wait_outcome(_st(last={"kind": "rollout_completed", "at": 1.0, "message": "100 % held"}))
    assert done == (0, "the rollout of s completed: 100 % held")
    code, why = wait_outcome(_st(last={"kind": "rollout_rolled_back", "at": 1.0, "message": "5xx at 25 %"}))
    assert code == 1 and "rolled back: 5xx at 25 %" in why
    assert wait_outcome(_st())[0] == 0  # none ever: nothing to wait for


def test_a_canary_held_for_promote_ends_the_wait_with_3() -> None:
    code, why = wait_outcome(_st(_ro(held_for_promote=True)))
    assert code == 3 and "headway rollout promote s" in why


def test_a_rollout_seen_running_is_waited_for_until_its_own_end_is_recorded() -> None:
    before = {"kind": "rollout_rolled_back", "at": 1.0, "message": "v3 failed", "version": 3}
    assert wait_outcome(_st(last=before), seen=4) is None  # v4's traffic moved; its end not yet recorded
    done = {"kind": "rollout_completed", "at": 2.0, "message": "100 % held", "version": 4}
    assert wait_outcome(_st(last=done), seen=4) == (0, "the rollout of s completed: 100 % held")
    assert wait_outcome(_st(last=before))[0] == 1  # nothing seen: the last end says it
