"""The control plane: one long-lived process per state dir that watches every
service and repairs it (the head first, then workers).

It also serves the REST API, the web dashboard and the metrics (``api``), and carries
out the changes asked through it (``operations``). It is never on the data path:
killing it stops no request. Everything it knows is
in the state dir, so a restarted controller carries on where the last one stopped
(including a head replacement it was in the middle of). One controller per state
dir is guaranteed by an exclusive lock held for its whole life.

Observe, decide, act: probes gather a ``ServiceView``; ``watchdog.decide`` (pure)
picks the action; repairs run in a thread per service under the service's lock,
so probing of the other services goes on meanwhile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from headway.cluster import gcs_client
from headway.control import (
    alerts,
    changes,
    cloud_repair,
    leader,
    operations,
    repair,
    rollout,
    scaling,
    series_sampler,
    steps,
    store_watch,
    token_rotation,
)
from headway.control.context import Context
from headway.ingress import door, instances
from headway.ingress import endpoint as ingress
from headway.model import states
from headway.model.errors import Cancelled
from headway.plan import reconcile as plan
from headway.plan import series, watchdog
from headway.state import locks, records
from headway.state.records import ServiceRecord
from headway.state.transitions import record_event, set_state
from headway.system import procs

log = logging.getLogger("headway.controller")

#: A repair the loop starts in a thread: its own context, a fresh read of the record.
Repair = Callable[[Context, ServiceRecord], None]

#: The controller exits when no service has existed for this long (nothing to watch);
#: ``HEADWAY_IDLE_EXIT_S`` changes it (0: never).
IDLE_EXIT_S = 15.0
#: How often the stores' memory use is read for the 80% alert.
STORE_CHECK_PERIOD_S = 5.0


#: What a repair is, as a refused command is told.
_DOING = {
    watchdog.Action.RECOVER_HEAD: "a head replacement",
    watchdog.Action.RESTART_INGRESS: "an ingress restart",
    watchdog.Action.REPLACE_WORKERS: "a worker replacement",
    watchdog.Action.CONVERGE: "a resumed update",
    watchdog.Action.FINISH_RECOVERY: "the end of a head replacement",
}

#: How an UNHEALTHY service's reason starts when a head replacement failed (and is retried).
HEAD_REPLACEMENT_FAILED = "head replacement failed"


def _since_last(rec: ServiceRecord, kind: str) -> float | None:
    """Seconds since the service's latest event of ``kind``; None without one."""
    at = next((e.at for e in reversed(rec.events) if e.kind == kind), None)
    return None if at is None else time.time() - at


@dataclass
class _ServiceWatch:
    head_marker: str
    head: watchdog.HeadWatch
    last_attempt: float | None = None
    last_autoscale: float = 0.0
    last_rollout: float = 0.0


@dataclass
class Controller:
    period_s: float = watchdog.PROBE_PERIOD_S
    probe_timeout_s: float = watchdog.PROBE_TIMEOUT_S
    failure_threshold: int = watchdog.FAILURE_THRESHOLD
    watches: dict[str, _ServiceWatch] = field(default_factory=dict)
    active: dict[str, threading.Thread] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    ops: operations.Operations = field(default_factory=operations.Operations)
    lease: leader.Lease | None = None  # the store hosts' lease: act only while holding it

    # -- one round ----------------------------------------------------------------------
    def observe(self, ctx: Context, rec: ServiceRecord, store_primary: str | None = None) -> watchdog.ServiceView:
        """``store_primary``: the managed store's primary now (``host:port``), as Sentinel says."""
        prov = ctx.provider(rec)
        head = rec.head
        w = self.watches.get(rec.name)
        if w is None or head is None or w.head_marker != head.marker:
            last = w.last_attempt if w else None
            w = _ServiceWatch(head.marker if head else "", watchdog.HeadWatch(self.failure_threshold), last)
            self.watches[rec.name] = w
        alive = prov.alive_or_unknown(head) if head else False
        healthy = alive is not False and gcs_client.healthy(
            rec.gcs_address, rec.ray_token, timeout_s=self.probe_timeout_s
        )
        moved = bool(head and head.store and store_primary and head.store != store_primary)
        verdict, why = watchdog.judge_head(w.head, watchdog.HeadProbe(time.time(), alive, healthy, moved))
        if verdict != watchdog.Verdict.OK and rec.state in watchdog.WATCHED_STATES:
            log.info("%s: head %s (%s)", rec.name, verdict, why)
        # What the service needs is the reconcile plan's answer (the same function a deploy
        # follows); ``watchdog.decide`` adds the controller's policy (busy, backoff, no FT).
        needed: list[plan.Step] = []
        if verdict == watchdog.Verdict.OK:
            observed = dataclasses.replace(steps.observed_of(ctx, rec), head_alive=True)
            needed = plan.plan(steps.desired_of(rec.desired_version or 0, rec.spec, rec), observed)
        return watchdog.ServiceView(
            state=rec.state,
            gcs_ft=rec.gcs_ft,
            head=verdict,
            head_why=why,
            dead_workers=tuple(s.node or "" for s in needed if s.kind == plan.StepKind.REPLACE_DEAD_WORKER),
            busy=locks.is_locked(rec.name),
            since_last_attempt_s=(time.time() - w.last_attempt) if w.last_attempt else None,
            ingress_down=rec.ingress is not None and not instances.alive(ctx.cloud, rec.ingress),
            unconverged=rec.state == states.State.UPDATING
            or (rec.desired_version is not None and rec.desired_version != rec.running_version)
            or any(s.kind in plan.CHANGES for s in needed),
            recovery_unfinished=rec.state == states.State.UNHEALTHY and rec.reason.startswith(HEAD_REPLACEMENT_FAILED),
            since_worker_failure_s=_since_last(rec, repair.WORKER_REPLACEMENT_FAILED),
        )

    def round(self) -> int:
        """Probe every service once and start the repairs it needs; return how many services."""
        procs.reap_children()
        # Finished repairs first, then the records: a repair that ended after the records were
        # read would leave its service judged on the state it had before (a head just
        # replaced, still HEAD_RECOVERING in that read, was replaced a second time).
        for name in [n for n, t in self.active.items() if not t.is_alive()]:
            del self.active[name]
        recs = records.all_records()
        ctx = Context.load()  # the round's one read of the cloud
        store_primary = cloud_repair.store_primary(ctx.cloud) if any(r.head and r.head.store for r in recs) else None
        for rec in recs:
            if rec.name in self.active or rec.state not in watchdog.WATCHED_STATES:
                continue
            if locks.terminate_requested(rec.name):
                continue  # terminate preempts every repair: none is started
            view = self.observe(ctx, rec, store_primary)
            action, why = watchdog.decide(view)
            if action == watchdog.Action.NONE:
                self._rollout_if_due(rec) or self._autoscale_if_due(rec)
                continue
            log.info("%s: %s (%s)", rec.name, action, why)
            self._act(rec.name, action, why)
        return len(recs)

    def _act(self, name: str, action: watchdog.Action, why: str) -> None:
        w = self.watches[name]
        lost_at = w.head.first_failure_at or time.time()
        repairs: dict[watchdog.Action, Repair] = {
            watchdog.Action.RECOVER_HEAD: lambda ctx, rec: self._recover(ctx, rec, why, lost_at),
            watchdog.Action.RESTART_INGRESS: self._restart_ingress,
            watchdog.Action.REPLACE_WORKERS: self._replace_workers,
            watchdog.Action.MARK_UNHEALTHY: lambda ctx, rec: self._mark_unhealthy(rec, why),
            watchdog.Action.CONVERGE: self._converge,
            watchdog.Action.FINISH_RECOVERY: lambda ctx, rec: self._recover(ctx, rec, why, lost_at, keep_head=True),
        }
        if action in (watchdog.Action.RECOVER_HEAD, watchdog.Action.CONVERGE, watchdog.Action.FINISH_RECOVERY):
            w.last_attempt = time.time()
        self._start(name, _DOING.get(action, str(action)), repairs[action])

    def _autoscale_if_due(self, rec: ServiceRecord) -> None:
        """A round of the service's autoscaling every ``scaling.PERIOD_S`` while it is RUNNING."""
        w = self.watches[rec.name]
        if rec.state != states.State.RUNNING or not rec.spec.compute_config.autoscaled:
            return
        if time.monotonic() - w.last_autoscale < scaling.PERIOD_S:
            return
        w.last_autoscale = time.monotonic()
        self._start(rec.name, "autoscaling", self._autoscale)

    def _rollout_if_due(self, rec: ServiceRecord) -> bool:
        """A rollout's next decision every ``rollout.PERIOD_S`` (it pauses itself while a head is down)."""
        w = self.watches[rec.name]
        if rec.rollout is None or time.monotonic() - w.last_rollout < rollout.PERIOD_S or locks.is_locked(rec.name):
            return rec.rollout is not None  # (held by the deploy that starts it, or a command)
        w.last_rollout = time.monotonic()
        self._start(
            rec.name,
            "a rollout step",
            lambda ctx, r: _recorded(r, "rollout step", "rollout_step_failed", lambda say: rollout.tick(ctx, r, say)),
        )
        return True

    def _start(self, name: str, what: str, repair_fn: Repair) -> None:
        t = threading.Thread(target=self._holding, args=(name, what, repair_fn), name=f"{what}:{name}", daemon=True)
        self.active[name] = t
        t.start()

    @staticmethod
    def _holding(name: str, what: str, repair_fn: Repair) -> None:
        """Run one repair holding the service's lock, on a fresh read of its record and of
        the cloud (its own context); a service another command holds is left for a later round."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(locks.locked(name, what))
            except RuntimeError as exc:
                log.info("%s: %s", name, exc)
                return
            rec = records.load(name)
            if rec is not None:
                repair_fn(Context.load(), rec)

    # -- repairs (threads, the service's lock held) -------------------------------------------
    @staticmethod
    def _recover(ctx: Context, rec: ServiceRecord, why: str, lost_at: float, keep_head: bool = False) -> None:
        name = rec.name

        def say(message: str) -> None:
            log.info("%s: %s", name, message)

        try:
            if keep_head:
                repair.finish_recovery(ctx, rec, progress=say)
            else:
                repair.recover_head(ctx, rec, why, lost_at, progress=say)
            log.info("%s: head replaced; RUNNING %.1f s after the loss", name, time.time() - lost_at)
        except Cancelled as exc:
            log.info("%s: head replacement stopped: %s", name, exc)
        except Exception as exc:  # noqa: BLE001 - any failure: UNHEALTHY, retried later
            log.warning("%s: head replacement failed: %s", name, exc)
            rec = records.load(name) or rec
            why = f"{HEAD_REPLACEMENT_FAILED}: {exc}"[:500]
            if rec.state == states.State.UNHEALTHY:  # it failed before it began: the reason is news
                rec.reason = why
                record_event(rec, "head_replacement_failed", why)
                records.save(rec)
            else:
                set_state(rec, states.State.UNHEALTHY, why)

    @staticmethod
    def _replace_workers(ctx: Context, rec: ServiceRecord) -> None:
        if rec.state != states.State.RUNNING:
            return
        prov = ctx.provider(rec)
        dead = [w.name for w in rec.workers if not prov.alive(w)]
        if not dead:
            return
        _recorded(
            rec,
            "worker replacement",
            repair.WORKER_REPLACEMENT_FAILED,
            lambda say: repair.replace_workers(ctx, rec, dead, progress=say),
        )

    @staticmethod
    def _converge(ctx: Context, rec: ServiceRecord) -> None:
        try:
            changes.resume(ctx, rec, progress=lambda m: log.info("%s: %s", rec.name, m))
            log.info("%s: the unfinished change is done", rec.name)
        except Exception as exc:  # noqa: BLE001 - recorded on the timeline; retried after a backoff
            log.warning("%s: finishing the change failed: %s", rec.name, exc)

    @staticmethod
    def _autoscale(ctx: Context, rec: ServiceRecord) -> None:
        _recorded(rec, "autoscaling", "autoscale_failed", lambda say: scaling.run_round(ctx, rec, progress=say))

    @staticmethod
    def _restart_ingress(ctx: Context, rec: ServiceRecord) -> None:
        running = rec.ingress is not None and instances.alive(ctx.cloud, rec.ingress)
        if rec.ingress is None or (running and door.answering(ctx.cloud, rec)):
            return
        try:
            if running:  # only the door of its shared port died: the endpoint keeps its connections
                door.follow(ctx.cloud, rec)
            else:
                ingress.start(ctx.cloud, rec, rec.spec)
            record_event(rec, "ingress_restarted", f"ingress restarted at {rec.endpoint}")
            log.info("%s: ingress restarted", rec.name)
        except Exception as exc:  # noqa: BLE001 - recorded; the next round tries again
            log.warning("%s: ingress restart failed: %s", rec.name, exc)
            record_event(rec, "ingress_restart_failed", str(exc)[:500])
        records.save(rec)

    @staticmethod
    def _mark_unhealthy(rec: ServiceRecord, why: str) -> None:
        if rec.state != states.State.UNHEALTHY:
            set_state(rec, states.State.UNHEALTHY, why)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        idle_since: float | None = None
        last_store_check = 0.0
        last_sample, sampler = 0.0, None
        while not self.stopping.is_set():
            started = time.monotonic()
            held = self.lease.verdict if self.lease else "act"
            if held == "stop":
                log.error("the controller lease is another controller's now (fenced): stopping without acting")
                return
            if held == "pause":
                log.warning("the store does not answer and the lease may have run out: not acting")
                self.stopping.wait(1.0)
                continue
            if started - last_store_check >= STORE_CHECK_PERIOD_S:
                last_store_check = started
                try:
                    crec = Context.load().cloud
                    cloud_repair.repair(crec)
                    store_watch.check_all(crec)
                    alerts.check(crec)
                except Exception:  # noqa: BLE001 - the watchdog must outlive a bad store reading
                    log.exception("store check failed")
                try:
                    token_rotation.expire(Context.load())
                except Exception:  # noqa: BLE001 - nor a reload that failed (tried again next time)
                    log.exception("ending a token's grace period failed")
            if started - last_sample >= series_period_s() and not (sampler and sampler.is_alive()):
                last_sample = started
                sampler = threading.Thread(target=series_sampler.sample_all, name="series", daemon=True)
                sampler.start()
            try:
                count = self.round()
            except Exception:  # noqa: BLE001 - the watchdog must outlive one bad round
                log.exception("round failed")
                count = 1
            if self.lease is not None and self.lease.put_state() is False:
                log.error("the state write was refused: the lease is another controller's (fenced); stopping")
                return
            if count == 0 and not self.active and not self.ops.running():
                idle_since = idle_since or time.monotonic()
                idle_exit = float(os.environ.get("HEADWAY_IDLE_EXIT_S", IDLE_EXIT_S))
                if idle_exit > 0 and time.monotonic() - idle_since > idle_exit:
                    log.info("no service left to watch; exiting")
                    return
            else:
                idle_since = None
            self.stopping.wait(max(0.05, self.period_s - (time.monotonic() - started)))


def series_period_s() -> float:
    """How often each service's history gets a point (``HEADWAY_SERIES_PERIOD_S``)."""
    return float(os.environ.get("HEADWAY_SERIES_PERIOD_S", series.PERIOD_S))


def _recorded(rec: ServiceRecord, what: str, failed_kind: str, work: Callable[[Callable[[str], None]], Any]) -> None:
    """Run a repair that the next round simply tries again: its failure goes on the timeline."""
    try:
        work(lambda m: log.info("%s: %s", rec.name, m))
    except Cancelled:
        log.info("%s: %s stopped for terminate", rec.name, what)
    except Exception as exc:  # noqa: BLE001 - recorded; the next round tries again
        log.warning("%s: %s failed: %s", rec.name, what, exc)
        rec = records.load(rec.name) or rec
        record_event(rec, failed_kind, str(exc)[:500])
        records.save(rec)
