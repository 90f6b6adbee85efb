"""Judging a service's health from probes: pure decisions, no I/O.

The controller probes; these functions decide. Two signals for the head: its
supervisor (``node_supervisor``: it exits as soon as the GCS or the raylet dies)
and the GCS's own health check (gRPC ``CheckAlive``). A vanished process is a crash and is
declared at once; an unanswered health check only counts as a failure, and the head
is declared dead after ``failure_threshold`` failures in a row, so one slow answer
from a busy but live head never triggers a replacement. A head whose host did not say
(an SSH probe unanswered on a loaded machine) has shown no crash: only its health
check counts, so a live head is never replaced for one late SSH answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

#: Probe period and threshold defaults: a crash is seen within one period (0.5 s); a
#: hung head within period * threshold + probe timeout (about 2.5 s).
PROBE_PERIOD_S = 0.5
PROBE_TIMEOUT_S = 1.0
FAILURE_THRESHOLD = 3


class Verdict(StrEnum):
    OK = "ok"
    SUSPECT = "suspect"
    DEAD = "dead"


@dataclass(frozen=True)
class HeadProbe:
    """One look at a head: is its supervisor process there, did the GCS answer healthy."""

    at: float
    process_alive: bool | None  # None: its host did not answer the look
    gcs_healthy: bool
    # Sentinel names another primary than the one the head was started with: its GCS writes
    # to a store that is gone or now a replica (a GCS whose primary's host vanished without
    # a reset may hang instead of exiting, and still answer health checks).
    store_moved: bool = False


@dataclass
class HeadWatch:
    """Consecutive failed probes of one head (reset by a healthy probe or a new head)."""

    failure_threshold: int = FAILURE_THRESHOLD
    failures: int = 0
    first_failure_at: float | None = None
    history: list[HeadProbe] = field(default_factory=list)


def judge_head(watch: HeadWatch, probe: HeadProbe) -> tuple[Verdict, str]:
    """Update ``watch`` with ``probe`` and say what the head is, with the reason."""
    if probe.process_alive and probe.gcs_healthy and not probe.store_moved:
        watch.failures = 0
        watch.first_failure_at = None
        return Verdict.OK, "GCS healthy"
    if probe.process_alive is None and probe.gcs_healthy and not probe.store_moved:
        # Neither a failure nor a recovery: the count stands until a look that says.
        return Verdict.SUSPECT, "the head's host did not answer the process check; its GCS answers healthy"
    watch.failures += 1
    if watch.first_failure_at is None:
        watch.first_failure_at = probe.at
    if probe.process_alive is False:
        return Verdict.DEAD, "head processes are gone"
    if probe.store_moved:
        return Verdict.DEAD, "the GCS store failed over to another primary"
    if watch.failures >= watch.failure_threshold:
        unanswered = " (its host did not answer the process check either)" if probe.process_alive is None else ""
        return Verdict.DEAD, f"GCS health check failed {watch.failures} times in a row{unanswered}"
    return Verdict.SUSPECT, f"GCS health check failed ({watch.failures}/{watch.failure_threshold})"


#: How long a failed head replacement waits before the next attempt.
RETRY_BACKOFF_S = 10.0
#: How long a failed worker replacement (its host does not answer, so it cannot be fenced)
#: waits before the next: each attempt is on the timeline, and asks the host again.
WORKER_RETRY_BACKOFF_S = 5.0


@dataclass(frozen=True)
class ServiceView:
    """What the controller observed of one service in one round."""

    state: str
    gcs_ft: bool
    head: Verdict
    head_why: str = ""  # the verdict's reason, as ``judge_head`` gave it
    dead_workers: tuple[str, ...] = ()
    busy: bool = False  # another command holds the service (deploy, update, terminate)
    since_last_attempt_s: float | None = None  # since this controller last tried a recovery
    ingress_down: bool = False  # the service's HAProxy process is gone
    unconverged: bool = False  # a change left unfinished: desired version != running, or UPDATING
    recovery_unfinished: bool = False  # UNHEALTHY because a head replacement failed part-way
    since_worker_failure_s: float | None = None  # since the last failed worker replacement


class Action(StrEnum):
    NONE = "none"
    RESTART_INGRESS = "restart_ingress"
    RECOVER_HEAD = "recover_head"
    REPLACE_WORKERS = "replace_workers"
    CONVERGE = "converge"  # finish an interrupted change (the same steps a deploy takes)
    FINISH_RECOVERY = "finish_recovery"  # a failed replacement's head is up: re-adopt, re-place, serve
    MARK_UNHEALTHY = "mark_unhealthy"


#: States in which the controller looks after a service at all.
WATCHED_STATES = frozenset({"RUNNING", "UPDATING", "HEAD_RECOVERING", "UNHEALTHY"})


def decide(view: ServiceView) -> tuple[Action, str]:
    """The next repair for a service, as (action, reason).

    The head always comes first: workers can only be replaced through a live GCS.
    A service another command holds is left alone (that command fails on a dead
    head and lets go, or finishes)."""
    if view.state not in WATCHED_STATES:
        return Action.NONE, f"not watched in state {view.state}"
    if view.busy:
        return Action.NONE, "another command holds the service"
    if view.ingress_down:
        # The endpoint is the data path: back first (it takes well under a second).
        return Action.RESTART_INGRESS, "the ingress process is gone"
    if view.state == "HEAD_RECOVERING":
        # Only a controller that died mid-recovery leaves this state unheld.
        return Action.RECOVER_HEAD, "an interrupted recovery is resumed"
    if view.head == Verdict.DEAD:
        if not view.gcs_ft:
            if view.state == "UNHEALTHY":
                return Action.NONE, "head is down and GCS fault tolerance is off"
            return Action.MARK_UNHEALTHY, "head is down and GCS fault tolerance is off: the service is lost"
        if view.state == "UNHEALTHY" and _within(view.since_last_attempt_s, RETRY_BACKOFF_S):
            return Action.NONE, "head replacement failed recently; waiting before the next attempt"
        return Action.RECOVER_HEAD, "head is down" + (f": {view.head_why}" if view.head_why else "")
    if view.head == Verdict.OK and view.recovery_unfinished and view.gcs_ft:
        # Its new head came up, then something after it failed (a dead worker's host that
        # did not answer, replicas slow to come back): nothing else would ever end UNHEALTHY.
        if _within(view.since_last_attempt_s, RETRY_BACKOFF_S):
            return Action.NONE, "the last attempt to finish the head replacement was just now; waiting"
        return Action.FINISH_RECOVERY, "the head replacement failed after its new head came up; finished with it"
    if view.head == Verdict.OK and view.dead_workers and view.state == "RUNNING":
        if _within(view.since_worker_failure_s, WORKER_RETRY_BACKOFF_S):
            return Action.NONE, "a worker replacement failed just now; waiting before the next attempt"
        return Action.REPLACE_WORKERS, "worker(s) down: " + ", ".join(view.dead_workers)
    if view.head == Verdict.OK and view.unconverged and view.state in ("RUNNING", "UPDATING"):
        if _within(view.since_last_attempt_s, RETRY_BACKOFF_S):
            return Action.NONE, "the last attempt to finish the change was just now; waiting"
        return Action.CONVERGE, "a change was left unfinished (the head died during it, or a controller restarted)"
    return Action.NONE, "healthy" if view.head == Verdict.OK else "head suspect"


def _within(since_s: float | None, backoff_s: float) -> bool:
    """The last attempt (or failure) was less than ``backoff_s`` ago; never, when there was none."""
    return since_s is not None and since_s < backoff_s
