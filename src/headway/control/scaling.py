"""One autoscaling round of a service: read the GCS, let ``autoscale`` decide, carry the
decision out with the same steps a deploy takes (a node is added as a deploy adds one; one
is removed only after Ray accepted to drain it and the ingress stopped sending to it).

The controller runs a round every ``PERIOD_S`` for each RUNNING service with a group that
follows the load, holding the service's lock like any repair. While the head is down the
controller runs the head's recovery instead, which records "autoscaling suspended"; the
first round allowed after it (``autoscale.suspended``) records "resumed" and decides on
demand read from the new GCS.
"""

from __future__ import annotations

import time
from typing import Any

from headway.cluster import gcs_client
from headway.control.context import Context, Progress
from headway.control.steps import add_workers, remove_worker
from headway.model.states import State
from headway.plan import autoscale
from headway.plan import reconcile as plan
from headway.state import records
from headway.state.records import ServiceRecord
from headway.state.transitions import record_event

#: Two gRPC reads of the GCS per round: cheap enough to follow Serve closely.
PERIOD_S = 2.0
SUSPENDED, RESUMED = autoscale.SUSPENDED, autoscale.RESUMED


def group_views(rec: ServiceRecord) -> list[autoscale.GroupView]:
    spec = rec.spec
    desired = plan.desired_workers(spec.compute_config.worker_nodes, spec.env_vars, rec.autoscaled)
    return [
        autoscale.GroupView(
            g.name,
            g.min_nodes or 0,
            g.max_nodes or 0,
            dict(g.resources),
            tuple(n for n, grp, _ in desired if grp == g.name),
        )
        for g in spec.compute_config.worker_nodes
        if g.autoscaled
    ]


def node_uses(
    rec: ServiceRecord, gcs_nodes: dict[str, dict[str, Any]], replica_nodes: set[str]
) -> dict[str, autoscale.NodeUse]:
    """What the GCS says of each worker: how long idle (None: not known or not alive), a replica on it."""
    out = {}
    for w in rec.workers:
        seen = gcs_nodes.get(w.node_id or "")
        idle = seen["idle_s"] if seen and seen["status"] in ("IDLE", "RUNNING") else None
        out[w.name] = autoscale.NodeUse(w.name, idle, bool(w.node_id and w.node_id in replica_nodes))
    return out


def _running_since(rec: ServiceRecord) -> float | None:
    running = [e.at for e in rec.events if e.kind == "state" and e.state == State.RUNNING]
    return running[-1] if running else None


def _last_suspension_event(rec: ServiceRecord) -> str | None:
    return next((e.kind for e in reversed(rec.events) if e.kind in (SUSPENDED, RESUMED)), None)


def run_round(ctx: Context, rec: ServiceRecord, progress: Progress) -> None:
    """One round (the caller holds the service's lock and read ``rec`` afresh)."""
    if not rec.spec.compute_config.autoscaled or autoscale.suspended(rec.state, _running_since(rec), time.time()):
        return
    if _last_suspension_event(rec) == SUSPENDED:
        record_event(rec, RESUMED, "autoscaling resumed: the head is back; deciding on demand read from its GCS")
        records.save(rec)
    token = rec.ray_token
    state = gcs_client.resource_state(rec.gcs_address, token)
    holding = gcs_client.replica_nodes(rec.gcs_address, token)
    if state is None or holding is None:
        return  # the GCS did not answer: the watchdog judges the head, the next round decides
    groups = group_views(rec)
    taken = {n.name for n in [*rec.nodes, *rec.retired]}
    decisions, blocked = autoscale.decide(
        groups, node_uses(rec, state["nodes"], holding), state["pending"], rec.spec.compute_config.idle_timeout_s, taken
    )
    waiting = sorted(f"{autoscale.describe(b)} x{c}" for b, c in state["pending"]) + blocked
    if waiting != rec.waiting:
        if set(blocked) - set(rec.waiting):  # said once, not every round it stays so
            record_event(rec, "autoscale_blocked", "; ".join(blocked))
        rec.waiting = waiting
        records.save(rec)
    for d in decisions:
        _carry_out(ctx, rec, d, progress)


def _carry_out(ctx: Context, rec: ServiceRecord, d: autoscale.Decision, progress: Progress) -> None:
    spec, t0 = rec.spec, time.time()
    removable = []
    for name in d.removed:
        node = next(w for w in rec.workers if w.name == name)
        refused = gcs_client.drain_node(rec.gcs_address, rec.ray_token, node.node_id or "", d.reason)
        if refused:
            record_event(rec, "scale_down_skipped", f"{name} stays: Ray refused to drain it ({refused})", node=name)
        else:
            removable.append(name)
    kept = (*d.nodes, *(n for n in d.removed if n not in removable))
    kind = "scale_up" if d.added else "scale_down"
    if not d.added and not removable:
        records.save(rec)
        return
    changed = list(d.added) or removable
    record_event(
        rec,
        kind,
        f"group {d.group}: {'+' if d.added else '-'}{len(changed)} ({', '.join(changed)}): {d.reason}",
        group=d.group,
        nodes=changed,
        size=len(kept),
    )
    rec.autoscaled[d.group] = list(kept)
    records.save(rec)  # the choice first: a controller that dies now converges to it
    if d.added:
        add_workers(
            ctx, rec, spec, [plan.Step(plan.StepKind.ADD_WORKER, n, d.group, d.reason) for n in d.added], progress
        )
    for name in removable:
        remove_worker(ctx, rec, spec, plan.Step(plan.StepKind.REMOVE_WORKER, name, d.group, d.reason), progress)
    record_event(
        rec,
        f"{kind}_done",
        f"group {d.group} has {len(kept)} node(s)",
        group=d.group,
        elapsed_s=round(time.time() - t0, 2),
    )
    records.save(rec)
