"""What a deploy checks before it starts a node: the store (reachable, credentials
accepted, single shard, replicated, no eviction, permissions) and the applications'
packages (resolved and packaged here, once). A failed check starts nothing."""

from __future__ import annotations

from headway.cluster import deps
from headway.control.context import Progress
from headway.control.store_access import ResolvedStorage, resolve_spec_storage
from headway.model.spec import ServiceSpec
from headway.plan import store_fitness
from headway.store import cloud, storage


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


def preflight(spec: ServiceSpec, progress: Progress = _quiet, dry_run: bool = False) -> ResolvedStorage | None:
    """Everything that can be checked before a node starts: the store, and the
    applications' packages (resolved and packaged here, once; a dry run only resolves)."""
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
