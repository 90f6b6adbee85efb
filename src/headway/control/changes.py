"""Changes to a service: deploy (create or update), rollback, scale, terminate.

Every accepted deploy is a version (``versions``). An update converges the running
service to its version one plan step at a time (``plan`` decides from what is observed,
``steps`` act), each step an event; when it fails, the service converges back to the
last version that ran, the same way, and the deploy says why it failed. Terminate
preempts whatever holds the service: it raises the flag every change and repair checks
at its safe points, waits briefly for it to let go, and removes everything.

Order matters and is the product's promise: every check of the input and of the store
runs *before* anything is started; a failed first deploy removes all it started;
terminate removes nodes first and only then the store namespace.
"""

from __future__ import annotations

import secrets
import time

from headway.control import preflight, rollout_start, steps, teardown
from headway.control import versions as versions_mod
from headway.control.context import Context, Progress
from headway.control.head_guard import recovering_since, refuse_while_recovering
from headway.control.node_start import start_head, wait_head, working_dir_uri
from headway.control.store_access import ResolvedStorage, create_store_user
from headway.model import states
from headway.model.errors import Busy, Cancelled, DeployError, Failed, HeadRecovering, InputError, PlacementError
from headway.model.spec import ServiceSpec, SpecError
from headway.model.spec_load import notes, parse_spec
from headway.plan import placement, rollout_policy
from headway.state import locks, records, uploads
from headway.state.records import ServiceRecord
from headway.state.transitions import record_event, set_state
from headway.store import cloud, cloud_setup, storage
from headway.system import node_user


class UpdateRolledBack(Failed):
    """The new version failed and the service runs the previous one again."""


def _quiet(_: str) -> None:
    pass


def _cloud(ctx: Context, progress: Progress) -> cloud.CloudRecord:
    """The cloud, set up by this deploy when there is none yet; its store processes running."""
    if ctx.cloud is None:
        if not cloud.auto_setup_enabled():
            raise InputError("no cloud is set up (HEADWAY_AUTO_CLOUD=0); run 'headway cloud setup'")
        progress("no cloud yet: setting up the managed GCS store (primary + replica)")
    return cloud_setup.setup()


def deploy(
    ctx: Context,
    spec: ServiceSpec,
    progress: Progress = _quiet,
    strict: bool = False,
    package_uri: str | None = None,
    origin: str = "deploy",
    strategy: str | None = None,
) -> ServiceRecord:
    """Create the service, or update it when one of that name exists; either way a new
    version. ``strict``: refuse a service whose replicas could not serve without the head.
    ``package_uri``: the uploaded working_dir package (None: keep the running one).
    ``strategy``: in_place or rollout (None: the spec's, else what the change needs)."""
    for note in notes(spec):
        progress(f"note: {note}")
    problems = placement.spec_problems(spec)
    if problems and strict:
        raise PlacementError("refused (--strict), nothing was started:\n  " + "\n  ".join(problems))
    for p in problems:
        progress(f"warning: {p}")
    resolved = preflight.preflight(ctx, spec, progress)
    existing = records.load(spec.name)
    if existing is not None:
        refuse_while_recovering(ctx, existing)
    with locks.locked(spec.name, "a deploy"):
        if locks.terminate_requested(spec.name):
            raise Busy(f"service {spec.name} is being terminated; deploy it again once it is gone")
        existing = records.load(spec.name)
        if existing is not None:
            refuse_while_recovering(ctx, existing)
            rollout_start.refuse_during_rollout(existing)
            crec = ctx.cloud
            updatable = existing.state in ("RUNNING", "UPDATING", "UNHEALTHY")
            if updatable and crec is not None and existing.head and ctx.provider(existing).alive(existing.head):
                how, why = rollout_policy.strategy_for(existing.spec, spec, strategy)
                package = package_uri or existing.working_dir_uri
                if how == "rollout":
                    progress(f"strategy: rollout ({why})")
                    return _roll_out(
                        ctx,
                        existing,
                        spec,
                        preflight.store_of(spec, resolved, crec, progress),
                        progress,
                        strict,
                        package,
                        origin,
                    )
                return _update(ctx, existing, spec, progress, strict, package, origin)
            progress(f"found leftovers of an earlier run of {spec.name}: removing them")
            teardown.remove_everything(ctx, existing, progress, delete_keys=True)
        crec = _cloud(ctx, progress)
        ctx = ctx.with_cloud(crec)
        ctx.provider().check_ready(progress)
        resolved = preflight.store_of(spec, resolved, crec, progress)
        version = versions_mod.create(spec.name, spec, package_uri, origin)
        rec = _create(ctx, spec, resolved, progress, strict, package_uri, version.number)
        versions_mod.set_outcome(spec.name, version.number, "ran")
        return rec


def _create(
    ctx: Context,
    spec: ServiceSpec,
    resolved: ResolvedStorage | None,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
    version: int,
    name: str | None = None,
    parent: str | None = None,
) -> ServiceRecord:
    """A new cluster running ``spec``: the service's (``name`` None), or a rollout's new
    cluster ``name`` behind the endpoint of service ``parent``."""
    name = name or spec.name
    prov = ctx.provider()
    crec = ctx.cloud
    assert crec is not None  # made by the deploy's cloud setup
    for ns in prov.leftover_namespaces(name, keep=set()) if not prov.loopback else []:
        progress(f"removing leftover namespace {ns}")
        prov.remove_namespace(ns)
    namespace = storage.new_namespace(name) if resolved else None
    if resolved and namespace:
        client = storage.connect(resolved.address)
        try:
            if storage.namespace_keys(client, namespace):
                raise DeployError(f"store namespace {namespace} is already in use; deploy again")
        finally:
            client.close()
    with locks.allocation_lock():
        head_ip, head_ports = prov.plan_head()
        rec = ServiceRecord(
            name=name,
            parent=parent,
            cluster_id=secrets.token_hex(4),
            mode=crec.mode,
            gcs_ft=spec.gcs_ft,
            storage_source=resolved.source if resolved else None,  # type: ignore[arg-type]
            storage_masked=resolved.address.masked() if resolved else None,
            namespace=namespace,
            spec=spec,
            head_ip=head_ip,
            gcs_port=head_ports["gcs"],
            dashboard_port=head_ports["dashboard"],
            serve_port=head_ports["proxy"],
            desired_version=version,
            node_uid=node_user.allocate(parent or name, [(r.service, r.node_uid) for r in records.all_records()]),
        )
        record_event(rec, "state", f"service created (version {version})")
        head = prov.new_node(rec, "head", "head", head_ip, head_ports)
        rec.nodes.append(head)
        records.save(rec)
    try:
        if rec.storage_source == "cloud" and rec.namespace:
            create_store_user(rec, crec)
            records.save(rec)
            progress(f"store user {rec.store_user}: keys of namespace {rec.namespace} only")
        rec.working_dir_uri = working_dir_uri(rec, spec, package_uri)
        progress(f"starting head node at {head.ip}" + (f" (netns {head.netns})" if head.netns else ""))
        start_head(ctx, rec, spec, head)
        records.save(rec)
        wait_head(rec, prov, head)
        record_event(rec, "head_started", f"head up at {head.ip}", elapsed_s=round(time.time() - rec.created_at, 2))
        progress("head is up; GCS " + (f"in store namespace {namespace}" if namespace else "in memory (FT disabled)"))
        # The rest is the same loop an update follows (workers, applications, the ingress);
        # in STARTING its workers start at once: nothing serves yet that they could disturb.
        steps.converge(rec, spec, version, ctx, progress, strict, package_uri)
        if parent is None:
            progress(f"ingress listening at {rec.endpoint} in front of {len(rec.workers)} worker(s)")
        rec.running_version = version
        set_state(
            rec, states.State.RUNNING, f"version {version} RUNNING", elapsed_s=round(time.time() - rec.created_at, 2)
        )
        return rec
    except BaseException as exc:
        progress(f"deploy failed ({type(exc).__name__}); removing what was started")
        versions_mod.set_outcome(spec.name, version, "failed", str(exc))
        teardown.remove_everything(ctx, rec, progress, delete_keys=True)
        raise


def _roll_out(
    ctx: Context,
    rec: ServiceRecord,
    spec: ServiceSpec,
    resolved: ResolvedStorage | None,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
    origin: str,
) -> ServiceRecord:
    """Start the new version as its own cluster beside the running one; the controller then
    moves the traffic (``rollout``). A cluster that does not start removes itself."""
    version = versions_mod.create(rec.name, spec, working_dir_uri(rec, spec, package_uri), origin)
    name, first = rollout_start.prepare(rec, spec, version.number)
    progress(f"starting version {version.number} as cluster {name}")
    try:
        _create(ctx, first, resolved, progress, strict, package_uri, version.number, name=name, parent=rec.name)
    except BaseException as exc:
        rollout_start.abandon(rec.name, version.number, exc)
        if isinstance(exc, Cancelled | KeyboardInterrupt):
            raise
        raise UpdateRolledBack(
            f"version {version.number} failed before it took any traffic: {exc}\n"
            f"version {rec.running_version} serves as before"
        ) from None
    return rollout_start.begin_traffic(ctx, rec.name, progress)


def _update(
    ctx: Context,
    rec: ServiceRecord,
    spec: ServiceSpec,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
    origin: str,
) -> ServiceRecord:
    old = rec.spec
    if old.ray_gcs_external_storage_config != spec.ray_gcs_external_storage_config:
        raise InputError(
            f"service {rec.name}: ray_gcs_external_storage_config cannot change in place (nothing was changed); "
            "deploy with --strategy rollout to move its GCS (a new cluster beside the running one)"
        )
    version = versions_mod.create(rec.name, spec, working_dir_uri(rec, spec, package_uri), origin)
    progress(f"updating service {rec.name} to version {version.number}")
    rec.desired_version = version.number
    set_state(rec, states.State.UPDATING, f"version {version.number}: {origin}")
    return _to_version(ctx, rec, version, old, progress, strict)


def _to_version(
    ctx: Context,
    rec: ServiceRecord,
    version: versions_mod.Version,
    old: ServiceSpec,
    progress: Progress,
    strict: bool,
) -> ServiceRecord:
    """Converge to ``version``; on failure back to the version that ran before (``old``)."""
    old_version, old_package = rec.running_version, rec.working_dir_uri
    try:
        steps.converge(rec, version.spec, version.number, ctx, progress, strict, version.package_uri)
    except (Cancelled, HeadRecovering) as exc:
        versions_mod.set_outcome(rec.name, version.number, "interrupted", str(exc))
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the new version: roll back
        versions_mod.set_outcome(rec.name, version.number, "failed", str(exc))
        return _roll_back(ctx, rec.name, version.number, exc, old, old_version, old_package, progress)
    versions_mod.set_outcome(rec.name, version.number, "ran")
    rec.running_version = version.number
    set_state(rec, states.State.RUNNING, f"version {version.number} applied")
    uploads.prune_packages(rec.name, versions_mod.packages_in_use(rec.name) | {rec.working_dir_uri or ""})
    return rec


def resume(ctx: Context, rec: ServiceRecord, progress: Progress = _quiet) -> ServiceRecord | None:
    """Finish a change the controller found unfinished — the head died during it, or the
    process carrying it out did: converge to the desired version, the same steps a deploy
    takes, rolling back to the running version if it fails."""
    with locks.locked(rec.name, "a resumed update"):
        rec = records.load(rec.name)
        if rec is None or rec.desired_version is None or ctx.cloud is None:
            return None
        version = versions_mod.get(rec.name, rec.desired_version)
        running = rec.running_version
        old = versions_mod.get(rec.name, running).spec if running and running != version.number else version.spec
        set_state(rec, states.State.UPDATING, f"version {version.number}: resumed (it was left unfinished)")
        try:
            return _to_version(ctx, rec, version, old, progress, strict=False)
        except UpdateRolledBack as exc:
            progress(str(exc))
            return records.load(rec.name)


def _roll_back(
    ctx: Context,
    name: str,
    failed: int,
    why: BaseException,
    spec: ServiceSpec,
    version: int | None,
    package_uri: str | None,
    progress: Progress,
) -> ServiceRecord:
    """Converge back to the last version that ran; raise what the deploy reports."""
    rec = records.load(name)
    assert rec is not None
    reason = f"version {failed} failed: {why}"[:500]
    if version is None:
        set_state(rec, states.State.UNHEALTHY, f"{reason}; no earlier version to roll back to")
        raise why
    progress(f"{reason}; rolling back to version {version}")
    record_event(
        rec, "rollback_started", f"rolling back to version {version}", failed_version=failed, reason=str(why)[:300]
    )
    rec.desired_version = version
    records.save(rec)
    try:
        steps.converge(rec, spec, version, ctx, progress, False, package_uri)
    except Exception as exc:  # noqa: BLE001 - reported with the first failure
        set_state(rec, states.State.UNHEALTHY, f"{reason}; the rollback to version {version} failed too: {exc}"[:500])
        raise DeployError(f"{reason}\nthe rollback to version {version} failed too: {exc}") from None
    set_state(rec, states.State.RUNNING, f"rolled back to version {version}: {reason}"[:500], rolled_back_from=failed)
    raise UpdateRolledBack(f"{reason}\nrolled back to version {version}, which is RUNNING")


def rollback(ctx: Context, name: str, to: int | None, progress: Progress = _quiet) -> ServiceRecord:
    """Deploy an earlier version again (default: the last one that ran before the running one)."""
    rec = records.existing(name)
    target = versions_mod.rollback_target(name, rec.running_version, to)
    progress(f"rolling back {name} to version {target.number} ({target.origin})")
    return deploy(ctx, target.spec, progress, package_uri=target.package_uri, origin=f"rollback to {target.number}")


def wait_recovered(ctx: Context, name: str, deadline: float, poll_s: float = 0.5) -> None:
    """Block until the service's head is back and nothing holds it (or ``deadline``)."""
    while time.monotonic() < deadline:
        rec = records.load(name)
        if rec is None or (recovering_since(ctx, rec) is None and not locks.is_locked(name)):
            return
        time.sleep(poll_s)


def scaled_spec(rec: ServiceRecord, group: str, count: int) -> ServiceSpec:
    """The service's spec with one worker group resized."""
    typed = rec.spec.compute_config.group(group)
    if typed is None:
        known = ", ".join(g.name for g in rec.spec.compute_config.worker_nodes)
        raise InputError(f"service {rec.name} has no worker group {group!r}; its groups: {known}")
    if typed.autoscaled:
        raise InputError(
            f"group {group!r} of {rec.name} follows the load (min_nodes {typed.initial}, max_nodes {typed.most}); "
            "change its bounds in the YAML and deploy it"
        )
    data = rec.spec.model_dump(mode="json", by_alias=False)  # a fresh copy: changed in place
    next(g for g in data["compute_config"]["worker_nodes"] if g["name"] == group)["count"] = count
    try:
        spec = parse_spec(data, f"scale of {rec.name}")
    except SpecError as exc:
        raise InputError(f"cannot scale {rec.name}: " + "; ".join(exc.problems)) from None
    preflight.check_worker_limit(spec, preflight.max_workers())  # refused now, not by the operation
    return spec
