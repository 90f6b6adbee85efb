"""What a deploy checks before it starts a node: the store (reachable, credentials
accepted, single shard, replicated, no eviction, permissions) and the applications'
packages (resolved and packaged here, once). A failed check starts nothing.

``dry_run`` runs them all and says what a deploy would do: ``validate`` here (the CLI on
the control host) and through the API (a remote CLI) are this one function."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from headway.cluster import deps
from headway.control.context import Context, Progress
from headway.control.store_access import ResolvedStorage, resolve_spec_storage
from headway.ingress import endpoint
from headway.model.errors import InputError, PlacementError
from headway.model.spec import DEFAULT_MAX_WORKERS, MAX_WORKERS, ServiceSpec
from headway.model.spec_compute import FEWER, workers_in_all
from headway.model.spec_load import notes
from headway.plan import placement, store_fitness
from headway.state import records
from headway.store import cloud, storage

#: What a dry run cannot know before nodes run: said, so "valid" is not read as more.
UNCHECKED = (
    "that the applications import and build on the nodes (their own imports and arguments), "
    "that the replicas start and pass their health checks, and that the resources asked fit the hosts"
)


#: The control plane's setting: how many workers one service may have (each costs the
#: endpoint a health check every 250 ms from each of its instances; README, "endpoint").
MAX_WORKERS_VAR = "HEADWAY_MAX_WORKERS"


def max_workers(environ: Mapping[str, str] = os.environ) -> int:
    """``HEADWAY_MAX_WORKERS`` (read at each use: the control plane's env file is read
    again before each operation); an unfit value is named, not taken for the default."""
    raw = environ.get(MAX_WORKERS_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_WORKERS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise InputError(
            f"{MAX_WORKERS_VAR}={raw[:20]!r} in the control plane's settings is not a number of workers "
            f"from 1 to {MAX_WORKERS}; fix it (or remove it: {DEFAULT_MAX_WORKERS})"
        )
    return int(raw)


def check_worker_limit(spec: ServiceSpec, limit: int) -> None:
    if spec.compute_config.most_workers > limit:
        raise InputError(
            f"{workers_in_all(spec.compute_config)}; this control plane allows at most {limit} per service "
            f"({MAX_WORKERS_VAR}, up to {MAX_WORKERS}: each worker costs its endpoint a health check every "
            f"250 ms); {FEWER}"
        )


def _quiet(_: str) -> None:
    pass


def check_store_fitness(addr: storage.StoreAddress, require_replica: bool, progress: Progress) -> None:
    """Reachable, credentials accepted, single shard, replicated, no eviction, permissions."""
    findings = store_fitness.judge(storage.inspect(addr), require_replica)
    for f in findings:
        if f.level == "warning":
            progress(f"warning ({f.check}): {f.message}")
        elif f.level == "info":
            progress(f"store {f.check}: {f.message}")
    errs = store_fitness.errors(findings)
    if errs:
        raise storage.StoreError(
            f"the GCS store at {addr.masked()} is not fit:\n" + "\n".join(f"  - {f.check}: {f.message}" for f in errs)
        )


def preflight(
    ctx: Context, spec: ServiceSpec, progress: Progress = _quiet, dry_run: bool = False
) -> ResolvedStorage | None:
    """Everything that can be checked before a node starts: the endpoint's port, the store,
    and the applications' packages (resolved and packaged here, once; a dry run only resolves)."""
    check_worker_limit(spec, max_workers())
    problem = endpoint.listen_problem(ctx.cloud, spec)
    if problem is not None:
        raise InputError(problem)
    if dry_run:
        deps.check_all(spec, progress)
    else:
        deps.build_all(spec.name, spec, progress)
    if not spec.gcs_ft:
        return None
    own = resolve_spec_storage(spec)
    if own is not None:
        progress(f"checking GCS store {own.masked()}")
        check_store_fitness(own, spec.ray_gcs_external_storage_config.require_replica, progress)
        return ResolvedStorage(own, "spec")
    return None


def store_of(
    spec: ServiceSpec, resolved: ResolvedStorage | None, crec: cloud.CloudRecord, progress: Progress
) -> ResolvedStorage | None:
    """The store a new cluster of ``spec`` uses: its own (checked in preflight), else the managed one."""
    if resolved is None and spec.gcs_ft:
        addr = cloud.store_address(crec)
        progress(f"checking GCS store {addr.masked()} (managed)")
        check_store_fitness(addr, require_replica=True, progress=progress)
        resolved = ResolvedStorage(addr, "cloud")
    return resolved


def dry_run(ctx: Context, spec: ServiceSpec, strict: bool, progress: Progress = _quiet) -> dict[str, Any]:
    """Every check a deploy runs before it starts anything (placement, requirements, the
    store, the hosts), and what the deploy would do; starts nothing."""
    said_notes = notes(spec)
    for note in said_notes:
        progress(f"note: {note}")
    problems = placement.spec_problems(spec)
    for p in problems:
        progress(f"{'error' if strict else 'warning'}: {p}")
    if problems and strict:
        raise PlacementError("refused (--strict), nothing was started:\n  " + "\n  ".join(problems))
    own = preflight(ctx, spec, progress, dry_run=True)
    if ctx.cloud is not None:
        ctx.provider().check_ready(progress)  # the hosts (SSH mode), or this machine's sandboxing
    if own is None and spec.gcs_ft and ctx.cloud is not None:
        addr = cloud.store_address(ctx.cloud)
        progress(f"checking GCS store {addr.masked()} (managed)")
        check_store_fitness(addr, require_replica=True, progress=progress)
    elif own is None and spec.gcs_ft:
        progress("no cloud yet: a deploy would set up the managed store first")
    progress(f"not checked without starting nodes: {UNCHECKED}")
    rec = records.load(spec.name)
    groups = spec.compute_config.worker_nodes
    return {
        "valid": True,
        "name": spec.name,
        "action": "update" if rec else "create",
        "running_version": rec.running_version if rec else None,
        "applications": len(spec.applications),
        "workers": sum(g.initial for g in groups),
        "workers_max": sum(g.most for g in groups) if spec.compute_config.autoscaled else None,
        "notes": said_notes,
        "placement_warnings": problems,
        "not_checked": UNCHECKED,
        "started": False,
    }
