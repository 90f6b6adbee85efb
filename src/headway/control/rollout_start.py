"""Starting a rollout: the new cluster's name and first worker counts (within the surge),
the rollout written to the service's record before anything starts, its end if the new
cluster does not come up, and its first step once it runs. What a running rollout refuses
is here too. Moving it forward is ``rollout``'s.
"""

from __future__ import annotations

import time

from headway.control import rollout_window
from headway.control.context import Context, Progress
from headway.ingress import endpoint as ingress
from headway.model.errors import Busy, InputError
from headway.model.spec import ServiceSpec
from headway.plan import rollout_policy as policy
from headway.plan.haproxy_config import MAX_SLOTS
from headway.state import records
from headway.state.records import RolloutRecord, ServiceRecord
from headway.state.transitions import record_event


def cluster_name(service: str, version: int) -> str:
    return f"{service}_r{version}"


def refuse_during_rollout(rec: ServiceRecord) -> None:
    if rec.rollout is not None:
        ro = rec.rollout
        raise Busy(
            f"service {rec.name} is rolling out version {ro.version} ({ro.percent} % of traffic); "
            f"finish it first: 'headway rollout promote {rec.name}' or 'headway rollout rollback "
            f"{rec.name}'"
        )


def with_counts(spec: ServiceSpec, counts: dict[str, int]) -> ServiceSpec:
    """``spec`` with some fixed-size worker groups resized (a rollout's surge)."""
    cc = spec.compute_config
    groups = [g.model_copy(update={"count": counts[g.name]}) if g.name in counts else g for g in cc.worker_nodes]
    return spec.model_copy(update={"compute_config": cc.model_copy(update={"worker_nodes": groups})})


def surge_plan(old: ServiceSpec, new: ServiceSpec, percent: int) -> tuple[dict[str, int], dict[str, int]]:
    """Fixed-size groups' counts (old cluster, new cluster) at ``percent`` under the new
    spec's ``max_surge_percent``; a group that follows the load, or exists in one version
    only, is not capped."""
    old_counts, new_counts = {}, {}
    for g in new.compute_config.worker_nodes:
        before = old.compute_config.group(g.name)
        if g.autoscaled or before is None or before.autoscaled:
            continue
        old_counts[g.name], new_counts[g.name] = policy.surge_counts(
            before.initial, g.initial, percent, new.max_surge_percent
        )
    return old_counts, new_counts


def prepare(rec: ServiceRecord, spec: ServiceSpec, version: int) -> tuple[str, ServiceSpec]:
    """Check the rollout can run, write it to the record before anything starts; return the
    new cluster's name and the spec it starts with (its surge-capped worker counts)."""
    _, first = surge_plan(rec.spec, spec, 0)
    first_spec = with_counts(spec, first)
    if len(rec.workers) + first_spec.worker_count > MAX_SLOTS:
        raise InputError(
            f"a rollout of {rec.name} would put {len(rec.workers)} + {first_spec.worker_count} workers "
            f"behind the endpoint, which holds {MAX_SLOTS}; lower max_surge_percent or deploy with "
            "--strategy in_place"
        )
    name = cluster_name(rec.name, version)
    rec.rollout = RolloutRecord(cluster=name, version=version, from_version=rec.running_version)
    record_event(
        rec,
        "rollout_started",
        f"rolling out version {version} as a new cluster ({name}) beside version {rec.running_version}",
        version=version,
        surge=spec.max_surge_percent,
    )
    records.save(rec)
    return name, first_spec


def abandon(name: str, version: int, why: BaseException) -> None:
    """The new cluster could not start (it removed itself): the rollout is over, nothing moved."""
    rec = records.load(name)
    if rec is None:
        return
    rec.rollout = None
    record_event(rec, "rollout_rolled_back", f"version {version}'s cluster did not start: {why}"[:500], version=version)
    records.save(rec)


def begin_traffic(ctx: Context, name: str, progress: Progress) -> ServiceRecord:
    """The new cluster is RUNNING: its workers join the ingress at weight 0 (a seamless
    reload into weighted balancing, every request logged), and the first step is timed."""
    rec = records.load(name)
    assert rec is not None and rec.rollout is not None
    ingress.apply_update(ctx.cloud, rec, rec.spec)
    rec.rollout.window = rollout_window.snapshot(ctx.cloud, rec)
    rec.rollout.step_since = time.time()
    records.save(rec)
    progress(
        f"version {rec.rollout.version} runs beside version {rec.running_version}; the controller moves "
        f"the traffic in steps: 'headway rollout status {name}' follows it"
    )
    return rec
