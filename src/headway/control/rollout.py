"""Rollouts: the new version runs as its own Ray cluster (own head, workers, GCS namespace
and store user, head fault tolerance from its start) behind the service's endpoint and
token, and takes the traffic in steps, each judged on its own numbers.

The new cluster is a service record of its own, ``<service>_r<version>`` (``parent`` names
the service; ``_`` never occurs in a service name), so the controller watches and repairs
it like any service: a head dying mid-rollout is replaced as usual while the rollout
pauses. The rollout itself lives in the service's record (``RolloutRecord``) and moves
one decision at a time from the controller (``tick``, under the service's lock), so a
restarted controller picks it up where it was. Decisions are ``rollout_policy``'s.

At the end the service's record takes over the new cluster (same name, endpoint, token,
timeline, versions) and the old cluster is removed — nodes first, then its store
namespace and ACL user; a rollback removes the new cluster the same way.
"""

from __future__ import annotations

import shutil
import time

from headway.control import rollout_start, rollout_window, steps, teardown
from headway.control import versions as versions_mod
from headway.control.context import Context, Progress
from headway.ingress import backends, instances
from headway.ingress import endpoint as ingress
from headway.model.errors import Busy, InputError
from headway.model.spec import ServiceSpec
from headway.model.states import State
from headway.plan import rollout_policy as policy
from headway.state import locks, records, uploads
from headway.state.db import copy_token
from headway.state.records import ServiceRecord
from headway.state.transitions import record_event
from headway.system import paths

#: How often the controller moves a rollout (reads the ingress, decides).
PERIOD_S = 1.0


def thresholds(spec: ServiceSpec) -> policy.Thresholds:
    r = spec.rollout
    return policy.Thresholds(r.max_error_rate, r.max_p99_ratio, r.p99_slack_ms, r.min_requests)


# -- the controller's tick -----------------------------------------------------------------
def tick(ctx: Context, rec: ServiceRecord, progress: Progress) -> None:
    """One decision (the caller holds the service's lock and read ``rec`` afresh)."""
    ro = rec.rollout
    if ro is None:
        return
    nxt = records.load(ro.cluster)
    if nxt is None or nxt.state == State.STARTING:
        # The deploy that starts the new cluster holds the service's lock until it runs: a tick
        # that finds it still STARTING outlived that deploy (a crash), so it never will run.
        _abort(ctx, rec, nxt, "the new cluster never came up (the deploy starting it stopped)", progress)
        return
    target = versions_mod.get(rec.name, ro.version).spec
    up = instances.up_backends(ctx.cloud, rec.ingress)
    wanted, weights = backends.targets(rec, up)
    if rec.ingress and (set(wanted) != {a for a in rec.ingress.slots if a} or weights != rec.ingress.weights):
        # A new cluster's worker its own repair replaced, or a server gone up or down: the
        # split is over the servers that take traffic now.
        ingress.sync_backends(ctx.cloud, rec, rec.spec)
        records.save(rec)
    new_addrs = set(backends.backends_of(nxt, nxt.workers))
    old_n, new_n = rollout_window.numbers(ctx.cloud, rec, ro.window, new_addrs)
    # Read after the counters: a 500 counted above is never newer than a server's fall seen here.
    up_now = instances.up_backends(ctx.cloud, rec.ingress)
    lost = policy.lost_servers(ro.window.get("up", ()), up_now)
    th = thresholds(target)
    verdict, verdict_why = (None, "no traffic yet") if ro.percent == 0 else policy.judge(old_n, new_n, th)
    view = policy.View(
        percent=ro.percent,
        next_percent=policy.next_step(target.rollout.steps_percent, ro.percent, target.canary_percent, ro.promoted),
        canary_percent=target.canary_percent,
        promoted=ro.promoted,
        held_s=time.time() - ro.step_since,
        interval_s=target.rollout.step_interval_s,
        paused_by=policy.pause_reason(_heads_down(rec, nxt), lost, wanted, up_now),
        new_backends=len(new_addrs),
        new_backends_up=len(up & new_addrs),
        verdict=verdict,
        verdict_reason=verdict_why,
    )
    move, why = policy.decide(view)
    numbers = {"old": old_n.view(), "new": new_n.view()}
    recorded = len(rec.events)
    if move == policy.Move.PAUSE:
        if ro.paused is None:
            record_event(rec, "rollout_paused", why, percent=ro.percent)
        ro.paused = view.paused_by
    elif ro.paused is not None or lost:  # whole again: the step is held and judged afresh from now
        if ro.paused is not None:
            record_event(rec, "rollout_resumed", f"{ro.percent} % is held again from now (was paused: {ro.paused})")
        ro.paused = None
        _new_window(ctx, rec)
    elif move == policy.Move.ROLL_BACK:
        _abort(ctx, rec, nxt, why, progress, numbers)
        return
    elif move == policy.Move.ADVANCE:
        assert view.next_percent is not None
        _advance(ctx, rec, nxt, target, view.next_percent, why, numbers, progress)
        return
    elif move == policy.Move.COMPLETE:
        _complete(ctx, rec, nxt, target, why, numbers, progress)
        return
    elif move == policy.Move.HOLD_CANARY and not ro.last.startswith("canary"):
        record_event(rec, "rollout_canary_held", why, percent=ro.percent, **numbers)
    if why != ro.last or len(rec.events) != recorded:  # saved when something changed, not every second
        ro.last = why
        records.save(rec)


def _heads_down(rec: ServiceRecord, nxt: ServiceRecord) -> str | None:
    if rec.state != State.RUNNING:
        return f"the old cluster is {rec.state}"
    if nxt.state != State.RUNNING:
        return f"the new cluster is {nxt.state}"
    return None


def _new_window(ctx: Context, rec: ServiceRecord) -> None:
    assert rec.rollout is not None
    rec.rollout.window = rollout_window.snapshot(ctx.cloud, rec)
    rec.rollout.step_since = time.time()


def _advance(
    ctx: Context,
    rec: ServiceRecord,
    nxt: ServiceRecord,
    target: ServiceSpec,
    percent: int,
    why: str,
    numbers: dict,
    progress: Progress,
) -> None:
    """Resize both clusters for the next step within the surge cap (the old one gives back
    first), then move the weights."""
    ro = rec.rollout
    assert ro is not None
    old_counts, new_counts = rollout_start.surge_plan(_old_spec(rec), target, percent)
    if any(old_counts[g] < (rec.spec.compute_config.group(g) or _Zero).initial for g in old_counts):
        progress(f"the old cluster gives back workers for {percent} %: {old_counts}")
        steps.converge(
            rec,
            rollout_start.with_counts(rec.spec, old_counts),
            rec.running_version or 0,
            ctx,
            progress,
            False,
            rec.working_dir_uri,
        )
    if any(new_counts[g] > (nxt.spec.compute_config.group(g) or _Zero).initial for g in new_counts):
        progress(f"the new cluster grows for {percent} %: {new_counts}")
        with locks.locked(nxt.name, "a rollout step"):
            nxt = records.load(nxt.name) or nxt
            steps.converge(
                nxt,
                rollout_start.with_counts(target, new_counts),
                ro.version,
                ctx,
                progress,
                False,
                nxt.working_dir_uri,
            )
    ro.history.append({"percent": ro.percent, "until": time.time(), "since": ro.step_since, **numbers})
    before = ro.percent
    ro.percent = percent
    ingress.sync_backends(ctx.cloud, rec, rec.spec)
    _new_window(ctx, rec)
    ro.last = why
    record_event(
        rec,
        "rollout_step",
        f"{before} % → {percent} % of traffic to version {ro.version}",
        percent=percent,
        reason=why,
        **numbers,
    )
    records.save(rec)


class _Zero:
    initial = 0


def _old_spec(rec: ServiceRecord) -> ServiceSpec:
    """The old version's full spec (the record's may have given workers back)."""
    return versions_mod.get(rec.name, rec.running_version).spec if rec.running_version else rec.spec


def _complete(
    ctx: Context,
    rec: ServiceRecord,
    nxt: ServiceRecord,
    target: ServiceSpec,
    why: str,
    numbers: dict,
    progress: Progress,
) -> None:
    """The service's record takes over the new cluster; the old cluster is removed."""
    ro = rec.rollout
    assert ro is not None
    with locks.locked(nxt.name, "the end of a rollout"):
        nxt = records.load(nxt.name) or nxt
        old = rec.model_copy(deep=True)
        ingress.drain(ctx.cloud, rec, backends.backends_of(rec, rec.workers))
        time.sleep(ingress.DRAIN_S)
        ro.history.append({"percent": ro.percent, "until": time.time(), "since": ro.step_since, **numbers})
        merged = nxt.model_copy(
            update={
                "name": rec.name,
                "parent": None,
                "ingress": rec.ingress,
                "rollout": None,
                "events": rec.events,
                "created_at": rec.created_at,
                "desired_version": ro.version,
                "running_version": ro.version,
                "spec": target,
                "state": State.RUNNING,
            }
        )
        copy_token(records.ray_token_scope(nxt.name), records.ray_token_scope(rec.name))
        record_event(
            merged, "rollout_traffic_moved", f"version {ro.version} takes all traffic: {why}"[:500], history=ro.history
        )
        records.remove(nxt.name)
        ingress.apply_update(ctx.cloud, merged, merged.spec)  # back to leastconn, normal logging
        records.save(merged)
    progress(f"removing the old cluster (version {old.running_version})")
    removed = teardown.remove_cluster(ctx, old, progress, delete_keys=True, keep_logs=True)
    versions_mod.set_outcome(rec.name, ro.version, "ran")
    record_event(
        merged,
        "rollout_completed",
        f"version {ro.version} serves all traffic; the old cluster and {removed} store key(s) removed",
        version=ro.version,
    )
    records.save(merged)
    uploads.prune_packages(rec.name, versions_mod.packages_in_use(rec.name) | {merged.working_dir_uri or ""})


def _abort(
    ctx: Context,
    rec: ServiceRecord,
    nxt: ServiceRecord | None,
    why: str,
    progress: Progress,
    numbers: dict | None = None,
) -> None:
    """Traffic back to the old cluster at once, its workers back, the new cluster removed."""
    ro = rec.rollout
    assert ro is not None
    ro.percent = 0
    ingress.sync_backends(ctx.cloud, rec, rec.spec)  # weight 0 for the new cluster: at once
    if nxt is not None:
        ingress.drain(ctx.cloud, rec, backends.backends_of(nxt, nxt.workers))
    record_event(rec, "rollout_rolling_back", why, version=ro.version, **(numbers or {}))
    records.save(rec)
    full = _old_spec(rec)
    if full.compute_config != rec.spec.compute_config:
        progress("the old cluster takes back the workers it gave")
        steps.converge(rec, full, rec.running_version or 0, ctx, progress, False, rec.working_dir_uri)
    removed = 0
    if nxt is not None:
        locks.request_terminate(nxt.name)
        with locks.locked_waiting(nxt.name, "a rollout's rollback", teardown.TERMINATE_WAIT_S):
            nxt = records.load(nxt.name) or nxt
            removed = teardown.remove_cluster(ctx, nxt, progress, delete_keys=True, keep_logs=True)
            records.remove(nxt.name)
        shutil.rmtree(paths.service_dir(nxt.name), ignore_errors=True)
    rec.rollout = None
    ingress.apply_update(ctx.cloud, rec, rec.spec)
    versions_mod.set_outcome(rec.name, ro.version, "failed", why)
    rec.desired_version = rec.running_version
    record_event(
        rec,
        "rollout_rolled_back",
        f"version {ro.version} rolled back ({removed} store key(s) of its cluster removed): {why}"[:500],
        version=ro.version,
    )
    records.save(rec)


# -- asked through the API -----------------------------------------------------------------
def promote(name: str) -> ServiceRecord:
    """A rollout held at its canary continues with its remaining steps."""
    with locks.locked_waiting(name, "rollout promote", 30) as had:
        if not had:
            raise Busy(f"service {name} is busy ({locks.holder(name)}); retry")
        rec = _rolling(name)
        assert rec.rollout is not None
        rec.rollout.promoted = True
        record_event(rec, "rollout_promoted", f"promoted at {rec.rollout.percent} %: the remaining steps follow")
        records.save(rec)
        return rec


def roll_back(ctx: Context, name: str, progress: Progress) -> ServiceRecord:
    with locks.locked_waiting(name, "rollout rollback", 120) as had:
        if not had:
            raise Busy(f"service {name} is busy ({locks.holder(name)}); retry")
        rec = _rolling(name)
        assert rec.rollout is not None
        _abort(ctx, rec, records.load(rec.rollout.cluster), "rolled back by the operator", progress)
        return records.load(name) or rec


def _rolling(name: str) -> ServiceRecord:
    rec = records.existing(name)
    if rec.rollout is None:
        raise InputError(f"service {name} has no rollout in progress")
    return rec
