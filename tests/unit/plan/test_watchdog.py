"""Watchdog decisions: pure functions of probes and observed state."""

import pytest

from headway.plan import watchdog
from headway.plan.watchdog import Action, HeadProbe, HeadWatch, ServiceView, Verdict, decide, judge_head


def probe(alive: bool | None = True, healthy: bool = True, at: float = 0.0) -> HeadProbe:
    return HeadProbe(at=at, process_alive=alive, gcs_healthy=healthy)


def test_vanished_process_is_a_crash_at_once():
    w = HeadWatch(failure_threshold=5)
    assert judge_head(w, probe(alive=False, healthy=False, at=10.0))[0] == Verdict.DEAD
    assert w.first_failure_at == 10.0


def test_one_missed_health_check_of_a_live_head_is_not_death():
    w = HeadWatch(failure_threshold=3)
    assert judge_head(w, probe(healthy=False))[0] == Verdict.SUSPECT
    assert judge_head(w, probe(healthy=False))[0] == Verdict.SUSPECT
    verdict, why = judge_head(w, probe(healthy=False))
    assert verdict == Verdict.DEAD and "3 times" in why


def test_a_healthy_probe_resets_the_count():
    w = HeadWatch(failure_threshold=2)
    judge_head(w, probe(healthy=False, at=1.0))
    assert judge_head(w, probe())[0] == Verdict.OK
    assert w.failures == 0 and w.first_failure_at is None
    assert judge_head(w, probe(healthy=False))[0] == Verdict.SUSPECT


@pytest.mark.parametrize("threshold", [1, 4, 10])
def test_threshold_is_configurable(threshold):
    w = HeadWatch(failure_threshold=threshold)
    verdicts = [judge_head(w, probe(healthy=False))[0] for _ in range(threshold)]
    assert verdicts[-1] == Verdict.DEAD
    assert all(v == Verdict.SUSPECT for v in verdicts[:-1])


def view(**kw) -> ServiceView:
    base = dict(state="RUNNING", gcs_ft=True, head=Verdict.OK)
    return ServiceView(**(base | kw))


def test_dead_head_is_recovered():
    assert decide(view(head=Verdict.DEAD))[0] == Action.RECOVER_HEAD
    assert decide(view(state="UPDATING", head=Verdict.DEAD))[0] == Action.RECOVER_HEAD


def test_suspect_head_is_left_alone():
    assert decide(view(head=Verdict.SUSPECT))[0] == Action.NONE


def test_head_comes_before_workers():
    assert decide(view(head=Verdict.DEAD, dead_workers=("w-1",)))[0] == Action.RECOVER_HEAD
    assert decide(view(head=Verdict.SUSPECT, dead_workers=("w-1",)))[0] == Action.NONE


def test_dead_worker_replaced_only_when_running_with_a_healthy_head():
    assert decide(view(dead_workers=("w-1",)))[0] == Action.REPLACE_WORKERS
    assert decide(view(state="UPDATING", dead_workers=("w-1",)))[0] == Action.NONE


def test_a_held_service_is_not_touched():
    assert decide(view(head=Verdict.DEAD, busy=True))[0] == Action.NONE
    assert decide(view(dead_workers=("w-1",), busy=True))[0] == Action.NONE


def test_interrupted_recovery_is_resumed():
    assert decide(view(state="HEAD_RECOVERING", head=Verdict.OK))[0] == Action.RECOVER_HEAD


def test_failed_recovery_is_retried_after_a_backoff():
    soon = view(state="UNHEALTHY", head=Verdict.DEAD, since_last_attempt_s=1.0)
    assert decide(soon)[0] == Action.NONE
    later = view(state="UNHEALTHY", head=Verdict.DEAD, since_last_attempt_s=watchdog.RETRY_BACKOFF_S + 1)
    assert decide(later)[0] == Action.RECOVER_HEAD
    # A restarted controller has no memory of attempts: it tries at once.
    assert decide(view(state="UNHEALTHY", head=Verdict.DEAD))[0] == Action.RECOVER_HEAD


def test_without_gcs_ft_a_dead_head_means_a_lost_service():
    assert decide(view(gcs_ft=False, head=Verdict.DEAD))[0] == Action.MARK_UNHEALTHY
    assert decide(view(state="UNHEALTHY", gcs_ft=False, head=Verdict.DEAD))[0] == Action.NONE


@pytest.mark.parametrize("state", ["STARTING", "TERMINATING", "TERMINATED"])
def test_states_outside_the_watch(state):
    assert decide(view(state=state, head=Verdict.DEAD))[0] == Action.NONE


def test_an_unfinished_change_is_finished_once_the_head_is_back():
    view = ServiceView(state="RUNNING", gcs_ft=True, head=Verdict.OK, unconverged=True)
    assert decide(view)[0] == Action.CONVERGE
    assert decide(ServiceView(state="UPDATING", gcs_ft=True, head=Verdict.DEAD, unconverged=True))[0] == (
        Action.RECOVER_HEAD
    )
    assert decide(ServiceView(state="UPDATING", gcs_ft=True, head=Verdict.OK, unconverged=True, busy=True))[0] == (
        Action.NONE
    )
    recent = ServiceView(state="RUNNING", gcs_ft=True, head=Verdict.OK, unconverged=True, since_last_attempt_s=2)
    assert decide(recent)[0] == Action.NONE
    dead_worker = ServiceView(state="RUNNING", gcs_ft=True, head=Verdict.OK, unconverged=True, dead_workers=("w-1",))
    assert decide(dead_worker)[0] == Action.REPLACE_WORKERS  # repairs first


def test_a_head_whose_store_failed_over_is_dead_at_once():
    """Sentinel names another primary than the head's: its GCS cannot persist (and may hang
    on a host that vanished without a reset, still answering health checks)."""
    w = watchdog.HeadWatch(failure_threshold=3)
    verdict, why = watchdog.judge_head(w, watchdog.HeadProbe(1.0, True, True, store_moved=True))
    assert verdict == watchdog.Verdict.DEAD and "failed over" in why
    assert watchdog.judge_head(watchdog.HeadWatch(), watchdog.HeadProbe(1.0, True, True))[0] == watchdog.Verdict.OK


def test_a_head_whose_host_did_not_answer_is_judged_by_its_gcs_alone():
    """Seen in CI: one SSH look at a loaded head host unanswered within its 2 s was taken
    for vanished processes, and a live head was replaced. Unanswered is not a crash: a GCS
    that answers keeps the head (the count of failures stands), one that does not counts."""
    w = HeadWatch(failure_threshold=3)
    assert judge_head(w, probe(healthy=False, at=1.0))[0] == Verdict.SUSPECT
    verdict, why = judge_head(w, probe(alive=None, at=2.0))
    assert verdict == Verdict.SUSPECT and "did not answer" in why and w.failures == 1
    assert judge_head(w, probe(alive=None, healthy=False, at=3.0))[0] == Verdict.SUSPECT
    verdict, why = judge_head(w, probe(alive=None, healthy=False, at=4.0))
    assert verdict == Verdict.DEAD and "3 times" in why and "host did not answer" in why
    assert w.first_failure_at == 1.0  # the loss is dated from the first failure
    assert judge_head(HeadWatch(), probe(alive=None, healthy=True))[0] != Verdict.DEAD


def test_the_reason_a_head_is_replaced_is_the_verdicts():
    action, why = decide(view(head=Verdict.DEAD, head_why="head processes are gone"))
    assert action == Action.RECOVER_HEAD and why == "head is down: head processes are gone"


def test_a_failed_replacement_whose_head_came_up_is_finished_not_left_unhealthy():
    unfinished = dict(state="UNHEALTHY", recovery_unfinished=True)
    assert decide(view(**unfinished))[0] == Action.FINISH_RECOVERY
    assert decide(view(**unfinished, since_last_attempt_s=1.0))[0] == Action.NONE  # after the backoff
    assert decide(view(**unfinished, since_last_attempt_s=watchdog.RETRY_BACKOFF_S + 1))[0] == Action.FINISH_RECOVERY
    assert decide(view(**unfinished, head=Verdict.SUSPECT))[0] == Action.NONE
    assert decide(view(**unfinished, head=Verdict.DEAD))[0] == Action.RECOVER_HEAD  # a new head, then
    assert decide(view(**unfinished, gcs_ft=False))[0] == Action.NONE
    assert decide(view(state="UNHEALTHY"))[0] == Action.NONE  # UNHEALTHY for another reason: left to the user


def test_a_failed_worker_replacement_waits_before_the_next():
    """A host that does not answer cannot be fenced: it is asked again after a pause, not
    every round (each attempt is two entries on the timeline)."""
    dead = dict(dead_workers=("w-1",))
    assert decide(view(**dead, since_worker_failure_s=1.0))[0] == Action.NONE
    after = watchdog.WORKER_RETRY_BACKOFF_S + 0.1
    assert decide(view(**dead, since_worker_failure_s=after))[0] == Action.REPLACE_WORKERS
    assert decide(view(**dead))[0] == Action.REPLACE_WORKERS
