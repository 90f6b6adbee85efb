"""A rollout's decisions, as pure functions of what was observed: which strategy an
update takes, how the traffic is split, how many workers each cluster keeps under the
surge cap, whether the new version's numbers pass, and what the rollout does next.

The rules, each with the reason a user would give:

- A step advances only when both heads are up: the mission says changes wait while a
  head is down (either cluster's), and a recovering head's proxies may be re-adopting.
- A step is judged on the new version's own numbers against the old version's over the
  same window, from the ingress: its 5xx share (a 5xx the ingress retried on another
  server counts, or retries would hide a broken version) and its p99 latency.
- A failing judgement rolls back at once, not at the end of the step: a broken version
  should see as little traffic as possible.
- A server that passed its checks when the step's window opened and no longer does (its
  worker died) pauses the step until every server in the table is up again, and the step is
  then held and judged afresh: the surviving proxies answer 500 for a moment for the
  replicas the dead worker took with it, which is the machine's fault, not the version's.
- Too few requests to judge (an idle service) is not a failure: the step then passes on
  the health of the new version's nodes alone, and the event says so.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from headway.model.spec import ServiceSpec

#: HAProxy's largest server weight: the split is expressed in it.
WEIGHT_SCALE = 256
#: A step whose new workers do not all pass the health checks for this long (or four step
#: intervals) rolls back: a version whose proxies never answer would hold the rollout forever.
READY_TIMEOUT_S = 120.0
#: Requests each version needs in a window before its p99 is judged.
P99_MIN_SAMPLES = 100


class Move(StrEnum):
    WAIT = "wait"  # hold the current step
    PAUSE = "pause"  # a head is down: hold, and say why
    ADVANCE = "advance"  # go to the next step
    HOLD_CANARY = "hold_canary"  # reached canary_percent: wait for 'rollout promote'
    COMPLETE = "complete"  # 100 % held and judged: remove the old cluster
    ROLL_BACK = "roll_back"


# -- which strategy ------------------------------------------------------------------------
def strategy_for(old: ServiceSpec, new: ServiceSpec, override: str | None) -> tuple[str, str]:
    """``in_place`` or ``rollout``, and why: the CLI's ``--strategy``, else the spec's
    ``rollout_strategy``, else in place unless the change cannot be applied in place."""
    if override:
        return override, f"--strategy {override}"
    if new.rollout_strategy:
        return new.rollout_strategy, f"rollout_strategy: {new.rollout_strategy}"
    if old.ray_gcs_external_storage_config != new.ray_gcs_external_storage_config:
        return "rollout", "the GCS store changes, which a running cluster cannot do"
    if old.compute_config.head_node != new.compute_config.head_node or old.env_vars != new.env_vars:
        return "rollout", "the head's or Ray's settings change (in place, that restarts the head)"
    if old.grpc_options != new.grpc_options:
        return "rollout", "the gRPC proxy's settings change, which Serve takes only at its start"
    if new.canary_percent is not None:
        return "rollout", "canary_percent is set"
    return "in_place", "the change applies in place"


# -- traffic split ---------------------------------------------------------------------------
def split_weights(n_old: int, n_new: int, percent: int) -> tuple[int, int]:
    """Per-server HAProxy weights that give the new cluster ``percent`` of the requests
    (the ingress balances by weight during a rollout)."""
    if n_new == 0 or percent <= 0:
        return (WEIGHT_SCALE if n_old else 0), 0
    if n_old == 0 or percent >= 100:
        return 0, WEIGHT_SCALE
    # Per-server weights w_old, w_new with n_new*w_new / (n_old*w_old + n_new*w_new) = percent.
    per_new = percent / n_new
    per_old = (100 - percent) / n_old
    top = max(per_new, per_old)
    return max(1, round(per_old / top * WEIGHT_SCALE)), max(1, round(per_new / top * WEIGHT_SCALE))


# -- surge -------------------------------------------------------------------------------
def surge_extra(count: int, max_surge_percent: int) -> int:
    """Workers a group may run beyond its count during a rollout (at least one)."""
    return count if max_surge_percent >= 100 else max(1, math.ceil(count * max_surge_percent / 100))


def surge_counts(old_count: int, new_count: int, percent: int, max_surge_percent: int) -> tuple[int, int]:
    """(old keeps, new runs) for one worker group at traffic ``percent``, never more than
    ``old_count`` + the surge alive at once: the old cluster gives back workers as the
    traffic leaves it (one is kept to the end: it is removed whole once the new version
    holds all traffic, and a cluster's spec keeps a worker to start with), the new one
    takes what is left."""
    if max_surge_percent >= 100 or old_count == 0:
        return old_count, new_count
    budget = old_count + surge_extra(old_count, max_surge_percent)
    old_keep = max(1, math.ceil((100 - percent) * old_count / 100))
    return old_keep, max(1, min(new_count, budget - old_keep))


# -- judging -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Numbers:
    """One version's requests over a window, as the ingress saw them."""

    requests: int
    errors: int  # 5xx answers, those the ingress retried elsewhere included
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def view(self) -> dict:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 1),
        }


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01
    max_p99_ratio: float = 2.0
    p99_slack_ms: float = 50.0
    min_requests: int = 20


def judge(old: Numbers, new: Numbers, th: Thresholds) -> tuple[bool | None, str]:
    """True: the new version passes; False: it fails (the reason names the number); None:
    too few requests to say."""
    if new.errors >= 2 and new.error_rate > old.error_rate + th.max_error_rate:
        return False, (
            f"5xx rate {new.error_rate:.1%} ({new.errors} of {new.requests}) against "
            f"{old.error_rate:.1%} for the old version (allowed: +{th.max_error_rate:.1%})"
        )
    if new.requests < th.min_requests:
        return None, f"{new.requests} request(s) to the new version (fewer than {th.min_requests}: not judged)"
    # Below 100 samples a "p99" is the slowest request (one cold start), not a percentile.
    if new.p99_ms is not None and old.p99_ms is not None and min(new.requests, old.requests) >= P99_MIN_SAMPLES:
        limit = max(old.p99_ms * th.max_p99_ratio, old.p99_ms + th.p99_slack_ms)
        if new.p99_ms > limit:
            return False, (
                f"p99 latency {new.p99_ms:.0f} ms against {old.p99_ms:.0f} ms for the old version "
                f"(allowed: {limit:.0f} ms)"
            )
    return True, f"5xx {new.error_rate:.1%} vs {old.error_rate:.1%}, p99 {_ms(new.p99_ms)} vs {_ms(old.p99_ms)}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def p99(samples: Sequence[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


# -- the next move -------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    percent: int  # the new version's share now
    next_percent: int | None  # the next step's (None: at 100)
    canary_percent: int | None
    promoted: bool
    held_s: float  # how long the current step has been held
    interval_s: float
    paused_by: str | None  # a head down or a server lost, if one is (``pause_reason``)
    new_backends: int
    new_backends_up: int
    verdict: bool | None
    verdict_reason: str


def lost_servers(window_up: Collection[str], up_now: Collection[str]) -> list[str]:
    """Servers that passed their checks when the step's window opened and no longer do."""
    return sorted(set(window_up) - set(up_now))


def pause_reason(
    heads_down: str | None, lost: Sequence[str], table: Collection[str], up_now: Collection[str]
) -> str | None:
    """Why the rollout holds still, if it must: a head is down, or a lost server's worker is
    not replaced and up yet (its replacement passing the checks ends the pause)."""
    if heads_down:
        return f"{heads_down}; the rollout resumes once it is back"
    if lost and not set(table) <= set(up_now):
        return f"{', '.join(lost)} stopped answering; the step is judged afresh once every server is up"
    return None


def decide(v: View) -> tuple[Move, str]:
    if v.paused_by:
        return Move.PAUSE, f"paused: {v.paused_by}"
    if v.verdict is False:
        return Move.ROLL_BACK, f"the new version failed at {v.percent} %: {v.verdict_reason}"
    if v.new_backends_up < v.new_backends or v.new_backends == 0:
        said = f"{v.new_backends_up} of {v.new_backends} new worker(s) pass the health checks"
        if v.held_s > max(READY_TIMEOUT_S, 4 * v.interval_s):
            return Move.ROLL_BACK, f"the new version is not ready at {v.percent} % after {v.held_s:.0f} s: {said}"
        return Move.WAIT, said
    if v.held_s < v.interval_s and v.percent > 0:
        return Move.WAIT, f"holding {v.percent} % ({v.held_s:.0f} of {v.interval_s:.0f} s)"
    if v.next_percent is None:
        return Move.COMPLETE, f"100 % held for {v.held_s:.0f} s: {v.verdict_reason}"
    if v.canary_percent is not None and v.percent >= v.canary_percent and not v.promoted:
        return Move.HOLD_CANARY, f"canary at {v.percent} %: 'headway rollout promote' continues"
    why = v.verdict_reason if v.percent > 0 else "the new version's workers pass the health checks"
    return Move.ADVANCE, f"{v.percent} % → {v.next_percent} %: {why}"


def next_step(steps: Sequence[int], percent: int, canary: int | None, promoted: bool) -> int | None:
    """The step after ``percent``; with a canary, the canary percentage is a step too."""
    points = sorted(set(steps) | ({canary} if canary else set()))
    later = [p for p in points if p > percent]
    if not later:
        return None
    if canary is not None and not promoted:
        later = [p for p in later if p <= canary] or later
    return later[0]
