"""Removing a service: terminate, which always wins, and the removal a failed first
deploy does. Nodes first (no GCS may be alive), then the store namespace, then the
records; a preempted change or repair stops at its next safe point, and a process no
record names is found by the cluster's marker."""

from __future__ import annotations

import shutil

from headway.control import log_archive
from headway.control.context import Context, Progress
from headway.control.store_access import delete_store_user, forget_store_password, store_address
from headway.ingress import endpoint as ingress
from headway.model import states
from headway.state import locks, records
from headway.state.records import ServiceRecord
from headway.state.transitions import set_state
from headway.store import cloud, storage
from headway.system import netns, paths, procs

#: How long terminate waits for a preempted change or repair to reach a safe point.
TERMINATE_WAIT_S = 30.0


def _quiet(_: str) -> None:
    pass


def remove_everything(ctx: Context, rec: ServiceRecord, progress: Progress, delete_keys: bool) -> int:
    """Nodes first (no GCS may be alive), then the store namespace, then the records."""
    ingress.stop(ctx.cloud, rec)  # stop taking requests first
    nxt = records.load(rec.rollout.cluster) if rec.rollout else None
    if nxt:
        locks.request_terminate(nxt.name)  # a repair of the new cluster stops too
    removed = remove_cluster(ctx, nxt, progress, delete_keys) if nxt else 0
    removed += remove_cluster(ctx, rec, progress, delete_keys)
    shutil.rmtree(paths.service_dir(rec.name) / "pkg", ignore_errors=True)
    log_archive.forget(rec.name)
    if rec.state == states.State.TERMINATING:
        set_state(rec, states.State.TERMINATED, "every node, namespace and key removed")
    if nxt:
        records.remove(nxt.name)
        shutil.rmtree(paths.service_dir(nxt.name), ignore_errors=True)
    records.remove(rec.name)
    return removed


def remove_cluster(
    ctx: Context, rec: ServiceRecord, progress: Progress, delete_keys: bool, keep_logs: bool = False
) -> int:
    """One Ray cluster of a service: its nodes, then its store namespace and ACL user (a
    rollout removes the old or the new cluster this way, and keeps the service and, with
    ``keep_logs``, the cluster's logs)."""
    prov, crec = ctx.provider(rec), ctx.cloud
    for node in sorted([*rec.nodes, *rec.retired], key=lambda n: n.role == "head"):
        log_archive.retire(prov, rec, node, keep_logs)
    if prov.mode == "netns" and netns.available():
        for ns in prov.leftover_namespaces(rec.name, keep=set()):
            prov.remove_namespace(ns)
    removed = 0
    if delete_keys and rec.gcs_ft and rec.namespace:
        try:
            spec = rec.spec
            admin = cloud.store_address(crec) if rec.storage_source == "cloud" and crec else None
            client = storage.connect(admin or store_address(crec, rec, spec))
            removed = storage.delete_namespace(client, rec.namespace)
            client.close()
            progress(f"deleted {removed} key(s) of store namespace {rec.namespace}")
        except Exception as exc:  # noqa: BLE001 - report, keep removing the rest
            progress(f"could not delete store namespace {rec.namespace}: {type(exc).__name__}")
    try:
        delete_store_user(rec, crec)
    except Exception as exc:  # noqa: BLE001 - report, keep removing the rest
        progress(f"could not delete store user {rec.store_user}: {type(exc).__name__}")
    forget_store_password(rec)
    return removed


def terminate(ctx: Context, name: str, progress: Progress = _quiet) -> None:
    """Always wins: whatever holds the service stops at its next safe point (a head being
    started is fenced with everything else); returns once nothing of the service is left."""
    records.existing(name)
    locks.request_terminate(name)
    if locks.is_locked(name):
        progress(f"preempting {locks.holder(name)} of {name}")
    with locks.locked_waiting(name, "terminate", TERMINATE_WAIT_S) as had_lock:
        if not had_lock:
            progress(f"{locks.holder(name)} did not stop within {TERMINATE_WAIT_S:.0f} s; terminating anyway")
        rec = records.load(name)
        if rec is not None:
            set_state(rec, states.State.TERMINATING, "terminate requested")
            progress(f"stopping {len(rec.nodes)} node(s) of {name}")
            remove_everything(ctx, rec, progress, delete_keys=True)
            _sweep(rec, progress)
    shutil.rmtree(paths.service_dir(name), ignore_errors=True)


def _sweep(rec: ServiceRecord, progress: Progress) -> None:
    """A process of the service that no record named (started by a preempted repair just
    as terminate read the record) is found by the cluster's marker and killed too."""
    left = procs.pids_with_marker(rec.cluster_id + "/")
    if left:
        progress(f"killing {len(left)} unrecorded process(es) of {rec.name}")
        procs.kill_pids(left)
