"""Repairs the controller carries out: replace a dead head, replace dead workers.

A head replacement is ordered as KubeRay orders it: the old head is fenced (every
process of its host killed, the host removed) *before* the new head starts, so two
GCSes never write the same store namespace. The new head takes the old address,
since that is the one address every worker knows, and a fresh host and temp dir.
Every step is an event on the service's timeline, with its duration.

Both repairs are idempotent: a controller that dies half-way runs them again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from headway.cluster import gcs_client, serve
from headway.cluster.serve import APPS_RUNNING_TIMEOUT_S, PROXIES_HEALTHY_TIMEOUT_S
from headway.control import log_archive
from headway.control.context import Context, Progress, Provider
from headway.control.head_guard import last_loss_at, recovering_since
from headway.control.node_start import head_exited, note_node_ids, start_head, start_worker, wait_head
from headway.control.store_access import wait_store_primary
from headway.ingress import backends
from headway.ingress import endpoint as ingress
from headway.model import states
from headway.model.errors import Cancelled, DeployError, Failed, HeadExited, HeadRecovering
from headway.model.spec import ServiceSpec
from headway.plan import autoscale
from headway.state import locks, records
from headway.state.records import NodeRecord, ServiceRecord
from headway.state.transitions import record_event, set_state

READOPT_TIMEOUT_S = 60
#: New heads one recovery starts before it gives up (then the controller retries later).
HEAD_ATTEMPTS = 3
REPLICAS_TIMEOUT_S = 120


def _quiet(_: str) -> None:
    pass


#: The timeline's entry for a replacement of dead workers that failed (retried later).
WORKER_REPLACEMENT_FAILED = "worker_replacement_failed"

#: One step of a head replacement on the service's timeline (kind, message, details).
Step = Callable[..., None]


def _stepper(rec: ServiceRecord, lost_at: float, progress: Progress) -> Step:
    """Records each step with its time since the loss and since this attempt began; each is
    a safe point where terminate preempts the replacement."""
    t0 = time.time()

    def step(kind: str, message: str, **details: Any) -> None:
        now = time.time()
        record_event(
            rec,
            kind,
            message,
            since_lost_s=round(now - lost_at, 2),
            since_recovery_start_s=round(now - t0, 2),
            **details,
        )
        records.save(rec)
        progress(f"{now - lost_at:5.1f}s {message}")
        locks.check_cancelled(rec.name)

    return step


def recover_head(
    ctx: Context, rec: ServiceRecord, reason: str, lost_at: float, progress: Progress = _quiet
) -> ServiceRecord:
    """Fence the dead head, start a new one at its address, wait until it re-adopted
    every live worker and every application is RUNNING. Raises DeployError on failure
    (the caller marks the service UNHEALTHY and retries later)."""
    if rec.state == states.State.HEAD_RECOVERING:
        lost_at = recovering_since(ctx, rec) or lost_at  # the loss it started from, not this controller's view
        set_state(
            rec, states.State.HEAD_RECOVERING, "a restarted controller resumes the head replacement", lost_at=lost_at
        )
    else:
        set_state(rec, states.State.HEAD_RECOVERING, f"head lost: {reason}", lost_at=lost_at)
        if rec.spec.compute_config.autoscaled:
            record_event(
                rec,
                autoscale.SUSPENDED,
                "autoscaling suspended: the head is down; no node is added "
                "or removed for the load until it is back (a dead worker is still replaced)",
            )
            records.save(rec)
        if rec.rollout is not None and rec.rollout.paused is None:  # the rollout's next tick resumes it
            rec.rollout.paused = "the old cluster's head is being replaced"
            record_event(
                rec,
                "rollout_paused",
                f"paused at {rec.rollout.percent} %: {rec.rollout.paused}; the rollout resumes once it is back",
            )
            records.save(rec)
    t0 = time.time()
    for attempt in range(1, HEAD_ATTEMPTS + 1):
        try:
            _new_head(ctx, rec, rec.spec, lost_at, progress)
            break
        except HeadExited as exc:
            if attempt == HEAD_ATTEMPTS:
                raise
            # Nothing to wait for: the next attempt fences this head and starts another now.
            record_event(
                rec,
                "head_attempt_failed",
                f"attempt {attempt} failed: {exc}",
                ray_says=exc.ray_says,
                since_lost_s=round(time.time() - lost_at, 2),
            )
            records.save(rec)
            progress(f"head attempt {attempt} failed ({exc.ray_says}); starting attempt {attempt + 1}")
    _replaced(rec, lost_at, t0)
    return rec


def finish_recovery(ctx: Context, rec: ServiceRecord, progress: Progress = _quiet) -> ServiceRecord:
    """The rest of a head replacement that failed after its new head came up (a dead
    worker's host that did not answer, replicas slow to come back): with that head, which
    the watchdog finds healthy, no head is killed — the workers re-adopted, the dead ones
    replaced, the applications serving. Raises like ``recover_head``."""
    lost_at = last_loss_at(rec)
    head = rec.head
    if head is None:
        raise DeployError(f"service {rec.name} has no head in its record")
    set_state(
        rec, states.State.HEAD_RECOVERING, "the head replacement is finished with the head now up", lost_at=lost_at
    )
    t0 = time.time()
    _serve_with(ctx, rec, head, None, _stepper(rec, lost_at, progress), progress)
    _replaced(rec, lost_at, t0)
    return rec


def _replaced(rec: ServiceRecord, lost_at: float, t0: float) -> None:
    now = time.time()
    set_state(
        rec, states.State.RUNNING, "head replaced", downtime_s=round(now - lost_at, 2), recovery_s=round(now - t0, 2)
    )


def replace_head(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, reason: str, progress: Progress = _quiet) -> None:
    """A head whose settings changed: the same fenced path as a failure (the workers keep
    serving, and are re-adopted by the new head), within an update (no state change)."""
    record_event(rec, "head_replacement_planned", f"head replaced: {reason}")
    _new_head(ctx, rec, spec, time.time(), progress)


def _new_head(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, lost_at: float, progress: Progress) -> None:
    prov = ctx.provider(rec)
    old = rec.head
    if old is None:
        raise DeployError(f"service {rec.name} has no head in its record")
    step = _stepper(rec, lost_at, progress)
    locks.check_cancelled(rec.name)
    # Its logs are kept when its host is this one (a dead host over SSH would cost the
    # recovery a second SSH timeout: the removal below already tries it once).
    log_archive.retire(prov, rec, old, keep_logs=prov.mode != "ssh")
    left = prov.pids(old)
    if left:
        raise DeployError(f"could not fence the old head: {len(left)} process(es) still alive")
    step("old_head_fenced", f"old head at {old.ip} fenced: no process of it is left")

    if rec.gcs_ft:
        addr = wait_store_primary(ctx.cloud, rec, spec)
        step("store_ready", f"GCS store primary at {addr.masked()} answers")

    new = prov.new_node(rec, "head", "head", old.ip, dict(old.ports))
    rec.nodes = [new if n is old else n for n in rec.nodes]
    records.save(rec)  # write-ahead: the new marker is known before the process exists
    start_head(ctx, rec, spec, new, recovering=True)
    records.save(rec)
    step("new_head_started", f"new head started at {new.ip}" + (f" (netns {new.netns})" if new.netns else ""))
    _serve_with(ctx, rec, new, old.node_id, step, progress)


def _serve_with(
    ctx: Context, rec: ServiceRecord, new: NodeRecord, dead_head_id: str | None, step: Step, progress: Progress
) -> None:
    """A replacement after its new head started: GCS up, live workers re-adopted, dead ones
    replaced, every application serving."""
    prov = ctx.provider(rec)
    wait_head(rec, prov, new)
    step("gcs_up", "GCS answers")

    live = [w for w in rec.workers if prov.alive(w)]
    # One machine shares one clock: the new head is also the one that started after it was launched.
    started_ms = (new.started_at - 2) * 1000 if prov.shares_clock and new.started_at else None
    nodes = wait_readopted(rec, live, prov, new, dead_head_id, started_ms)
    note_node_ids(rec, nodes)
    step(
        "workers_reregistered",
        f"{len(live)} live worker(s) re-registered under their node ids; one head ALIVE",
        workers=[w.name for w in live],
    )

    dead = [w.name for w in rec.workers if w not in live]
    if dead:
        # Lost while the head was down: nothing could re-place their replicas until now.
        try:
            replace_workers(ctx, rec, dead, progress)
        except (HeadRecovering, HeadExited, Cancelled):
            raise
        except Failed as exc:
            # The head is back and the live workers serve: a worker whose host does not
            # answer yet is the watchdog's to replace (each round, once RUNNING).
            step(WORKER_REPLACEMENT_FAILED, f"dead worker(s) not replaced yet: {exc}"[:500], workers=dead)

    names = [a.name for a in rec.spec.applications]
    serving = wait_serving(rec, names, prov, new, dead_head_id)
    prov.set_priority(new, 0)  # recovered: no longer ahead of the replicas
    step(
        "apps_running",
        f"Serve's controller ALIVE; replicas of {', '.join(names)} serving",
        replica_pids={f"{app}/{dep}": pids for app, deps in serving.items() for dep, pids in deps.items()},
    )


def serving(
    replicas: dict[str, dict[str, list[int]]] | None,
    controller_node: str | None,
    alive_node_ids: set[str],
    dead_head_id: str | None,
    apps: list[str],
) -> bool:
    """Serving-ready: Serve's controller ALIVE on a live node that is not the dead head
    (a restarted GCS lists it ALIVE there until it has processed that node's death), and
    every application with an ALIVE replica — all from the GCS's own tables; the
    dashboard, slower to start, is not needed for serving."""
    controller_back = controller_node in alive_node_ids and controller_node != dead_head_id
    return controller_back and replicas is not None and all(replicas.get(a) for a in apps)


def wait_serving(
    rec: ServiceRecord, apps: list[str], prov: Provider, head: NodeRecord, dead_head_id: str | None
) -> dict[str, dict[str, list[int]]]:
    deadline = time.monotonic() + APPS_RUNNING_TIMEOUT_S
    while time.monotonic() < deadline:
        locks.check_cancelled(rec.name)
        if not prov.alive(head):
            raise head_exited(prov, head, "before Serve's controller came back")
        addr, token = rec.gcs_address, rec.ray_token
        replicas = gcs_client.serve_replicas(addr, token)
        nodes = {n["node_id"] for n in gcs_client.alive_nodes(addr, token) or []}
        if serving(replicas, gcs_client.actor_node(addr, token), nodes, dead_head_id, apps):
            return replicas or {}
        time.sleep(0.3)
    raise DeployError(
        f"Serve's controller or the replicas of {', '.join(apps)} not back within {APPS_RUNNING_TIMEOUT_S} s"
    )


def readoption_complete(
    nodes: list[dict[str, Any]],
    live: list[NodeRecord],
    dead_head_id: str | None = None,
    head_started_ms: float | None = None,
) -> tuple[bool, str]:
    """Every live worker ALIVE under the node id it had, and exactly one ALIVE head — the
    new one: a GCS that has just restarted lists the dead head ALIVE (its reloaded table)
    until the new head has registered. The new head is told by its id (not the dead
    one's) and, where the clock is shared, by its start (not before ``head_started_ms``)."""
    heads = [n for n in nodes if n.get("is_head_node")]
    if len(heads) != 1:
        return False, f"{len(heads)} ALIVE head node(s)"
    stale = (dead_head_id and heads[0].get("node_id") == dead_head_id) or (
        head_started_ms is not None and heads[0].get("start_time_ms", head_started_ms) < head_started_ms
    )
    if stale:
        return False, "the new head has not registered yet (the GCS still lists the dead one)"
    alive_ids = {n.get("node_id") for n in nodes}
    alive_names = {n.get("node_name") for n in nodes}
    missing = [w.name for w in live if (w.node_id not in alive_ids if w.node_id else w.name not in alive_names)]
    if missing:
        return False, "not re-registered yet: " + ", ".join(missing)
    return True, "complete"


def wait_readopted(
    rec: ServiceRecord,
    live: list[NodeRecord],
    prov: Provider,
    head: NodeRecord,
    dead_head_id: str | None = None,
    head_started_ms: float | None = None,
) -> list[dict[str, Any]]:
    """Wait for every live worker and one head ALIVE; give up at once when the new head's
    host has died meanwhile (its raylet can miss Ray's 30 s registration window on a
    loaded machine, and then ``ray start`` exits): the watchdog starts another."""
    deadline = time.monotonic() + READOPT_TIMEOUT_S
    why = "no answer from the GCS"
    while time.monotonic() < deadline:
        locks.check_cancelled(rec.name)
        if not prov.alive(head):
            raise head_exited(prov, head, f"before the workers were re-adopted ({why})")
        nodes = gcs_client.alive_nodes(rec.gcs_address, rec.ray_token)
        if nodes is not None:
            done, why = readoption_complete(nodes, live, dead_head_id, head_started_ms)
            if done:
                return nodes
        time.sleep(0.3)
    raise DeployError(f"workers were not re-adopted within {READOPT_TIMEOUT_S} s: {why}")


def replace_workers(ctx: Context, rec: ServiceRecord, names: list[str], progress: Progress = _quiet) -> ServiceRecord:
    """Replace dead workers with new hosts of the same group; wait for full replica counts."""
    spec = rec.spec
    prov = ctx.provider(rec)
    t0 = time.time()
    started: list[NodeRecord] = []
    dead_ids: set[str] = set()
    for name in names:
        locks.check_cancelled(rec.name)
        old = next(n for n in rec.workers if n.name == name)
        record_event(rec, "worker_lost", f"worker {name} at {old.ip} is down", node=name, ip=old.ip)
        records.save(rec)
        if old.node_id:
            dead_ids.add(old.node_id)
        ingress.drain(ctx.cloud, rec, backends.backends_of(rec, [old]))
        # Fenced, but the host stays until its replacement serves: a host that still
        # exists resets the connections callers hold to it, and they retry at once; a
        # vanished one answers nothing and callers wait out their timeouts (~20 s).
        prov.kill(old)
        old.fenced = True
        records.save(rec)
        with locks.allocation_lock():
            taken = {n.ip for n in rec.nodes if n is not old}  # the provider says if its host is free
            ip, ports = prov.plan_worker(taken)
            new = prov.new_node(rec, name, "worker", ip, ports, group=old.group)
            rec.nodes = [new if n is old else n for n in rec.nodes]
            rec.retired.append(old)
            records.save(rec)
        start_worker(rec, spec, prov, new)
        records.save(rec)
        started.append(new)
        progress(f"worker {name} replaced by a new host at {ip}")
    try:
        _await_replacements(ctx, rec, prov, started, dead_ids, t0)
    finally:
        for old in rec.retired:
            log_archive.retire(prov, rec, old)
        rec.retired = []
        records.save(rec)
    return rec


def _await_replacements(
    ctx: Context, rec: ServiceRecord, prov: Provider, started: list[NodeRecord], dead_ids: set[str], t0: float
) -> None:
    spec = rec.spec
    wait_joined(rec, prov, started, dead_ids)
    ingress.sync_backends(ctx.cloud, rec, spec)  # the new host's proxy is let in by its health checks
    records.save(rec)
    record_event(
        rec,
        "worker_replaced",
        "new host(s) joined: " + ", ".join(f"{n.name} at {n.ip}" for n in started),
        elapsed_s=round(time.time() - t0, 2),
    )
    records.save(rec)
    details = wait_replicas(rec, prov, dead_ids)
    # Serve starts a new host's proxy a moment after its replicas: wait for it, so that
    # "placed" means the new host serves (the ingress's health checks agree).
    hosting = [w for w in serve.workers_with_replicas(rec, serve.replicas(details)) if w in started]
    idle = serve.wait_proxies([rec.proxy_url(w) for w in hosting], PROXIES_HEALTHY_TIMEOUT_S)
    counts = {
        f"{app}/{dep}": f"{d['running']}/{d['target']}"
        for app, deps in serve.replicas(details).items()
        for dep, d in deps.items()
    }
    record_event(
        rec,
        "replicas_placed",
        "every deployment back to its replica count",
        elapsed_s=round(time.time() - t0, 2),
        replicas=counts,
        proxies_healthy=len(hosting) - len(idle),
    )
    records.save(rec)


def wait_replicas(rec: ServiceRecord, prov: Provider, dead_ids: set[str]) -> dict[str, Any] | None:
    """Wait until every deployment is back to its replica count, none on a dead node."""
    deadline = time.monotonic() + REPLICAS_TIMEOUT_S
    while time.monotonic() < deadline:
        locks.check_cancelled(rec.name)
        _stop_if_head_lost(rec, prov, "its replicas were being placed again")
        details = serve.get_applications(serve.head_api(rec))
        if replicas_restored(serve.replicas(details), dead_ids):
            return details
        time.sleep(0.5)
    raise DeployError(f"replicas not back to their target count within {REPLICAS_TIMEOUT_S} s")


def replicas_restored(placed: dict[str, dict[str, dict[str, Any]]], dead_ids: set[str]) -> bool:
    """Every deployment at its target count, and no replica counted on a dead node (Serve
    lists a dead node's replicas as RUNNING until the GCS has declared the node dead)."""
    deps = [d for app in placed.values() for d in app.values()]
    return bool(deps) and all(
        d["target"] is not None and d["running"] >= d["target"] and not (set(d["node_ids"]) & dead_ids) for d in deps
    )


def wait_joined(rec: ServiceRecord, prov: Provider, started: list[NodeRecord], dead_ids: set[str]) -> None:
    """Wait until every new host is ALIVE under a node id of its own; remember the ids."""
    deadline = time.monotonic() + READOPT_TIMEOUT_S
    while time.monotonic() < deadline:
        locks.check_cancelled(rec.name)
        _stop_if_head_lost(rec, prov, "new workers were joining")
        nodes = gcs_client.alive_nodes(rec.gcs_address, rec.ray_token) or []
        ids = {n.get("node_name"): n.get("node_id") for n in nodes if n.get("node_id") not in dead_ids}
        if all(w.name in ids for w in started):
            for w in started:
                w.node_id = ids[w.name]
            records.save(rec)
            return
        for w in started:
            if not prov.alive(w) and time.time() - w.started_at > 5:
                raise DeployError(f"worker {w.name} exited during start; log: {w.log}")
        time.sleep(0.5)
    raise DeployError(f"new worker(s) did not join within {READOPT_TIMEOUT_S} s")


def _stop_if_head_lost(rec: ServiceRecord, prov: Provider, during: str) -> None:
    """Nothing a worker waits for (joining, its replicas placed) happens without the head,
    and the wait holds the service's lock the head's recovery needs: a head found dead ends
    the wait at once, and the controller replaces the head next."""
    if rec.head is not None and not prov.alive(rec.head):
        raise HeadRecovering(f"the head of service {rec.name} died while {during}; the controller replaces it")
