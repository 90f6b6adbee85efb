"""What each step of a reconcile plan does (``plan.StepKind``), on a live cluster.

The plan decides; these act. Each step is one event on the timeline and ends at a state
the next observation can read (a node record written before its process starts, a
config digest on every node), so a step cut short by a crash or by terminate is simply
planned again. The rolling worker step keeps serving: its successor joins first, the
ingress drains the old node, and only then is it removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from headway.cluster import deps, serve
from headway.cluster.serve import APPS_RUNNING_TIMEOUT_S, PROXIES_HEALTHY_TIMEOUT_S
from headway.control import log_archive, repair
from headway.control.context import Context, Progress, Provider
from headway.control.node_start import note_node_ids, ship_package, start_worker, wait_nodes, working_dir_uri
from headway.ingress import backends, instances
from headway.ingress import endpoint as ingress
from headway.model.errors import Cancelled, DeployError, HeadRecovering, PlacementError
from headway.model.spec import ServiceSpec
from headway.plan import placement
from headway.plan import reconcile as plan
from headway.state import locks, records
from headway.state.records import NodeRecord, ServiceRecord
from headway.state.transitions import record_event

#: How long an update waits for a head's dashboard (a new head's comes 10-20 s after its GCS).
DASHBOARD_TIMEOUT_S = 120
#: Steps one convergence may take (a loop that does not converge is a bug, not a wait).
MAX_STEPS = 64


def desired_of(version: int, spec: ServiceSpec, rec: ServiceRecord) -> plan.Desired:
    cc = spec.compute_config
    return plan.Desired(
        version=version,
        workers=plan.desired_workers(cc.worker_nodes, spec.env_vars, rec.autoscaled),
        head_config=plan.node_config(cc.head_node.resources, spec.env_vars),
        apps=plan.digest(serve_config_of(rec, spec)),
    )


def serve_config_of(rec: ServiceRecord, spec: ServiceSpec) -> dict[str, Any]:
    """What Serve is given for ``spec`` on this service's cluster."""
    grpc_port = rec.head.ports.get("grpc") if rec.head else None
    return serve.serve_config(spec, rec.working_dir_uri, rec.serve_port, deps.uris(rec.service, spec), grpc_port)


def observed_of(ctx: Context, rec: ServiceRecord) -> plan.Observed:
    prov = ctx.provider(rec)
    nodes = tuple(plan.NodeView(n.name, n.role, n.group, prov.alive(n), n.config) for n in rec.nodes)
    head = rec.head
    return plan.Observed(
        state=rec.state,  # type: ignore[arg-type]
        nodes=nodes,
        head_alive=bool(head and prov.alive(head)),
        ingress_up=rec.ingress is None or instances.alive(ctx.cloud, rec.ingress),
        apps=rec.apps_digest,
        terminate_requested=locks.terminate_requested(rec.name),
    )


def _plan_node(rec: ServiceRecord, prov: Provider, name: str, group: str) -> NodeRecord:
    with locks.allocation_lock():
        ip, ports = prov.plan_worker({n.ip for n in [*rec.nodes, *rec.retired]})
        return prov.new_node(rec, name, "worker", ip, ports, group=group)


#: Workers started at once. Each ``ray start`` gives up unless its raylet has registered
#: within Ray's fixed 30 s (``raylet_start_wait_time_s`` in ``ray/_private/node.py``):
#: 24 started together on 2 cores missed it (measured), so they start in waves, each
#: joined before the next.
START_WAVE = max(4, 3 * (os.cpu_count() or 1))


def add_workers(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, todo: list[plan.Step], progress: Progress) -> None:
    """Start new workers and wait until they joined. Several at once only for a first
    deploy (nothing serves yet, so nothing is gained by waiting for each), in waves of
    ``START_WAVE``."""
    prov = ctx.provider(rec)
    with locks.allocation_lock():
        taken = {n.ip for n in [*rec.nodes, *rec.retired]}
        for step in todo:
            assert step.node and step.group
            ip, ports = prov.plan_worker(taken)
            taken.add(ip)
            rec.nodes.append(prov.new_node(rec, step.node, "worker", ip, ports, group=step.group))
        records.save(rec)  # write-ahead: every new host is on record before it exists
    new = rec.workers[-len(todo) :]
    joined = len(rec.nodes) - len(new)
    for i in range(0, len(new), START_WAVE):
        wave = new[i : i + START_WAVE]
        for node in wave:
            progress(f"starting worker {node.name} at {node.ip}")
            start_worker(rec, spec, prov, node)
        records.save(rec)
        joined += len(wave)
        note_node_ids(rec, wait_nodes(rec, prov, joined, spec))
    ingress.sync_backends(ctx.cloud, rec, spec)
    records.save(rec)
    if rec.state == "STARTING":
        record_event(rec, "workers_joined", f"{len(new)} worker(s) joined")
        progress(f"{len(new)} worker(s) joined")


def remove_worker(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, step: plan.Step, progress: Progress) -> None:
    prov = ctx.provider(rec)
    old = next(w for w in rec.workers if w.name == step.node)
    ingress.drain(ctx.cloud, rec, backends.backends_of(rec, [old]))
    time.sleep(ingress.DRAIN_S)
    progress(f"removing worker {old.name}")
    log_archive.retire(prov, rec, old)
    rec.nodes.remove(old)
    ingress.sync_backends(ctx.cloud, rec, spec)
    records.save(rec)


def roll_worker(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, step: plan.Step, progress: Progress) -> None:
    """Replace a live worker by one with the new settings, losing no request: the successor
    (same name, new host) joins first; then the ingress stops sending to the old one, it
    is removed, and Serve places its replicas on the successor."""
    prov = ctx.provider(rec)
    assert step.node and step.group
    t0 = time.time()
    old = next(w for w in rec.workers if w.name == step.node)
    new = _plan_node(rec, prov, old.name, step.group)
    rec.nodes = [new if n is old else n for n in rec.nodes]
    rec.retired.append(old)  # still serving until the successor has joined
    records.save(rec)
    progress(f"rolling worker {old.name}: successor at {new.ip}")
    start_worker(rec, spec, prov, new)
    records.save(rec)
    dead_ids = {old.node_id} if old.node_id else set()
    repair.wait_joined(rec, prov, [new], dead_ids)
    ingress.sync_backends(ctx.cloud, rec, spec)  # the successor in (once healthy), the old one to maintenance
    records.save(rec)
    time.sleep(ingress.DRAIN_S)
    log_archive.retire(prov, rec, old)
    rec.retired = [n for n in rec.retired if n is not old]
    records.save(rec)
    repair.wait_replicas(rec, prov, dead_ids)
    record_event(
        rec,
        "worker_rolled",
        f"worker {old.name} replaced by {new.ip} with its new settings",
        node=old.name,
        elapsed_s=round(time.time() - t0, 2),
    )
    records.save(rec)


def apply_apps(rec: ServiceRecord, spec: ServiceSpec, progress: Progress, strict: bool) -> None:
    """Serve's own rolling update of the applications; then every proxy that should serve."""
    config = serve_config_of(rec, spec)
    serve.wait_dashboard(serve.head_api(rec), DASHBOARD_TIMEOUT_S, lambda: locks.check_cancelled(rec.name))
    progress(f"deploying {len(spec.applications)} application(s)")
    rec.apps_digest = None  # unknown until Serve runs it: a failed config is applied again on rollback
    records.save(rec)
    serve.put_applications(serve.head_api(rec), config)
    names = [a.name for a in spec.applications]

    def on_progress(statuses: dict[str, str], running: int, target: int) -> None:
        replicas = f"; replicas running: {running} of {target}" if target else ""
        progress("applications: " + ", ".join(f"{k}={v}" for k, v in statuses.items()) + replicas)
        locks.check_cancelled(rec.name)

    serve.wait_running(
        serve.head_api(rec), names, APPS_RUNNING_TIMEOUT_S, on_progress=on_progress, partial_ok=rec.parent is not None
    )
    placed = serve.replicas(serve.get_applications(serve.head_api(rec)))
    hosting = serve.workers_with_replicas(rec, placed)
    for w in rec.workers:
        if w not in hosting:
            # Serve (proxy_location EveryNode) runs a proxy only where a replica runs: none to
            # wait for; the ingress keeps the backend DOWN until a replica lands there.
            progress(f"warning: worker {w.name} holds no replica, so Serve runs no proxy there (no traffic)")
    idle = serve.wait_proxies([rec.proxy_url(w) for w in hosting], PROXIES_HEALTHY_TIMEOUT_S)
    for url in idle:
        progress(f"warning: the proxy at {url} serves no replica (it answers 503 on /-/healthz)")
    progress(f"the proxies of {len(hosting) - len(idle)} worker(s) are healthy")
    rec.apps_digest = plan.digest(config)
    head_id = rec.head.node_id if rec.head else None
    problems = placement.observed_problems(placed, head_id)
    if problems and strict:
        raise PlacementError("refused (--strict): " + "; ".join(problems))
    for p in problems:
        progress(f"warning: {p}")


def converge(
    rec: ServiceRecord,
    spec: ServiceSpec,
    version: int,
    ctx: Context,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
) -> None:
    """Observe, plan, do the first step; again until the plan is empty."""
    prov = ctx.provider(rec)
    rec.spec = spec
    rec.working_dir_uri = working_dir_uri(rec, spec, package_uri)
    records.save(rec)
    ship_package(rec, prov, rec.nodes)
    desired = desired_of(version, spec, rec)
    act: dict[plan.StepKind, Callable[[plan.Step], None]] = {
        plan.StepKind.ADD_WORKER: lambda s: add_workers(ctx, rec, spec, [s], progress),
        plan.StepKind.REMOVE_WORKER: lambda s: remove_worker(ctx, rec, spec, s, progress),
        plan.StepKind.ROLL_WORKER: lambda s: roll_worker(ctx, rec, spec, s, progress),
        plan.StepKind.REPLACE_DEAD_WORKER: lambda s: _replace_dead(ctx, rec, s, progress),
        plan.StepKind.REPLACE_HEAD: lambda s: _replace_head(ctx, rec, spec, s, progress),
        plan.StepKind.APPLY_APPS: lambda s: apply_apps(rec, spec, progress, strict),
        plan.StepKind.RESTART_INGRESS: lambda s: ingress.start(ctx.cloud, rec, spec),
    }
    for _ in range(MAX_STEPS):
        locks.check_cancelled(rec.name)
        observed = observed_of(ctx, rec)
        if not observed.head_alive:
            if rec.state == "STARTING":
                raise DeployError(f"the head of service {rec.name} exited during the first deploy")
            raise HeadRecovering(
                f"the head of service {rec.name} died during the change; the controller replaces "
                "it — deploy again once it is back, or pass --wait"
            )
        todo = [s for s in plan.plan(desired, observed) if s.kind != plan.StepKind.MARK_RUNNING]
        if not todo:
            break
        step = todo[0]
        if step.kind == plan.StepKind.TERMINATE:
            raise Cancelled(f"terminate of service {rec.name} preempted this change")
        t0 = time.time()
        first_deploy = rec.state == "STARTING" and step.kind == plan.StepKind.ADD_WORKER
        batch = [s for s in todo if s.kind == plan.StepKind.ADD_WORKER] if first_deploy else [step]
        progress(f"step: {step}" + (f" (and {len(batch) - 1} more, at once)" if len(batch) > 1 else ""))
        if len(batch) > 1:
            add_workers(ctx, rec, spec, batch, progress)
        else:
            act[step.kind](step)
        for done in batch:
            record_event(rec, f"step_{done.kind}", str(done), elapsed_s=round(time.time() - t0, 2), version=version)
        records.save(rec)
    else:
        raise DeployError(f"version {version} did not converge in {MAX_STEPS} steps")
    if rec.parent:
        return  # a rollout's new cluster: its parent's ingress fronts it, weighted by the rollout
    how = ingress.apply_update(ctx.cloud, rec, spec)  # the ingress's own settings (token, timeouts)
    records.save(rec)
    said = {"backends": "backends updated", "reloaded": "reloaded seamlessly", "started": "started"}[how]
    progress(f"ingress at {rec.endpoint}: {said}")


def _replace_dead(ctx: Context, rec: ServiceRecord, step: plan.Step, progress: Progress) -> None:
    repair.replace_workers(ctx, rec, [step.node or ""], progress)


def _replace_head(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, step: plan.Step, progress: Progress) -> None:
    repair.replace_head(ctx, rec, spec, step.reason, progress)
