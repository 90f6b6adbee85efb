"""A service's status as seen now, for the CLI, the API and the metrics: pure reads, no
secrets, never failing on one probe."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from headway.cluster import deps, serve
from headway.control import alert_delivery, rollout_window, store_usage, store_watch, versions
from headway.control.context import Context
from headway.control.store_access import store_address
from headway.ingress import backends, endpoint, instances
from headway.model import certificates, spec_show
from headway.model.errors import InputError
from headway.plan import series
from headway.state import records, series_store
from headway.state.records import ServiceRecord
from headway.store import cloud_setup
from headway.system import bounded

#: How long a status waits for a store's answer (a vanished host can hold a socket far longer).
STORE_PROBE_S = 10.0


def _usage(ctx: Context, rec: ServiceRecord) -> dict[str, Any]:
    """The service's bytes in its store; a store that does not answer in time says so."""

    def read() -> dict[str, Any]:
        return store_usage.service_usage(rec, store_address(ctx.cloud, rec, rec.spec))

    got = bounded.within(read, STORE_PROBE_S)
    return {"error": type(got).__name__} if isinstance(got, Exception) else got


def _node_names(rec: ServiceRecord, node_ids: list[str]) -> list[str]:
    names = {n.node_id: n.name for n in rec.nodes if n.node_id}
    return sorted(names.get(i, i[:8]) for i in node_ids)


def observe_storage(ctx: Context, rec: ServiceRecord) -> dict[str, Any]:
    """Where the service's GCS lives, what it takes there, and its store's alert."""
    if not rec.gcs_ft:
        return {"enabled": False, "note": "GCS fault tolerance is disabled: the head's death ends the service"}
    return {
        "enabled": True,
        "source": rec.storage_source,
        "address": rec.storage_masked,
        "namespace": rec.namespace,
        "user": rec.store_user,
        "usage": _usage(ctx, rec),
        "alert": store_watch.alert_of(store_watch.store_key(rec)),
        "share_alert": store_watch.share_alert_of(rec.service) if rec.storage_source == "cloud" else None,
    }


def observe(ctx: Context, rec: ServiceRecord) -> dict[str, Any]:
    """Status as seen now (no secrets): nodes, applications, storage."""
    prov = ctx.provider(rec)
    nodes = []
    for n in rec.nodes:
        nodes.append(
            {
                "name": n.name,
                "role": n.role,
                "group": n.group,
                "ip": n.ip,
                "netns": n.netns,
                "alive": prov.alive(n),
            }
        )
    head_alive = bool(rec.head and prov.alive(rec.head))
    details = serve.get_applications(serve.head_api(rec)) if head_alive else None
    placed = serve.replicas(details)
    apps = [
        {
            "name": a["name"],
            "status": serve.app_statuses(details).get(a["name"], "UNKNOWN"),
            "message": serve.app_messages(details).get(a["name"], ""),  # Serve's own, e.g. why it failed
            "route_prefix": a.get("route_prefix"),
            "replicas": {
                dep: {**d, "nodes": _node_names(rec, d["node_ids"])} for dep, d in placed.get(a["name"], {}).items()
            },
        }
        for a in rec.spec.model_dump(mode="json")["applications"]
    ]
    state, reason = rec.state, rec.reason
    if state == "RUNNING" and not head_alive:
        state, reason = "UNHEALTHY", "head node is down"
    elif state == "RUNNING" and not all(n["alive"] for n in nodes):
        reason = "a worker node is down"
    return {
        "name": rec.name,
        "state": state,
        "reason": reason,
        "mode": rec.mode,
        "gcs_fault_tolerance": rec.gcs_ft,
        "nodes": nodes,
        "applications": apps,
        "storage": observe_storage(ctx, rec),
        "dashboard_url": rec.dashboard_url,
        "endpoint": rec.endpoint,
        "certificate": certificate_view(rec),
        "token_required": rec.spec.query_auth_token_enabled,
        "desired_version": rec.desired_version,
        "running_version": rec.running_version,
        "ingress": _ingress_view(ctx, rec),
        "groups": groups_view(rec),
        "waiting": rec.waiting if rec.spec.compute_config.autoscaled else [],
        "rollout": rollout_window.view(ctx.cloud, rec),
        "last_rollout": rollout_window.last_outcome(rec),
    }


def certificate_view(rec: ServiceRecord) -> dict[str, Any] | None:
    """What the HTTPS endpoint presents: the names, and when it ends (the operator renews
    it by a redeploy before then; ``status`` warns two weeks ahead)."""
    tls = rec.spec.endpoint.tls
    if tls is None:
        return None
    try:
        cert = certificates.describe(Path(tls.cert).read_text())
    except OSError:
        cert = None
    if cert is None:
        return {"names": [], "expires_at": None, "expiring": True}
    soon = cert.not_after - time.time() < certificates.EXPIRY_WARNING_S
    return {"names": list(cert.names), "expires_at": cert.not_after, "expiring": soon}


def _ingress_view(ctx: Context, rec: ServiceRecord) -> dict[str, Any] | None:
    """The endpoint's counters, and the version each backend serves."""
    st = instances.stats(ctx.cloud, rec.ingress)
    return None if st is None else st | {"versions": backends.backend_versions(rec)}


def groups_view(rec: ServiceRecord) -> list[dict[str, Any]]:
    """Each worker group: its nodes now and its bounds (fixed groups: min = max = count)."""
    return [
        {
            "name": g.name,
            "nodes": sum(1 for w in rec.workers if w.group == g.name),
            "min": g.initial,
            "max": g.most,
            "autoscaled": g.autoscaled,
        }
        for g in rec.spec.compute_config.worker_nodes
    ]


def versions_view(rec: ServiceRecord) -> dict[str, Any]:
    """Every version on record (newest last), and which one is desired and which runs."""
    return {
        "desired": rec.desired_version,
        "running": rec.running_version,
        "versions": [v.view() for v in versions.all_of(rec.name)],
    }


def config_view(rec: ServiceRecord, number: int | None = None) -> dict[str, Any]:
    """The spec of a version (default: the running one, else the desired one), secrets
    masked, with the packages its applications were given."""
    chosen = number or rec.running_version or rec.desired_version
    if chosen is None:
        raise InputError(f"service {rec.name} has no version yet")
    version = versions.get(rec.name, chosen)
    packages = {app: uri.rsplit("/", 1)[-1] for app, uri in deps.uris(rec.name, version.spec).items()}
    return {
        "version": version.number,
        "running": version.number == rec.running_version,
        "spec": spec_show.shown(version.spec),
        "packages": packages,
    }


def service_list() -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "state": r.state,
            "reason": r.reason,
            "nodes": len(r.nodes),
            "gcs_ft": r.gcs_ft,
            "endpoint": r.endpoint,
            "desired_version": r.desired_version,
            "running_version": r.running_version,
            "rollout": r.rollout.percent if r.rollout else None,
        }
        for r in records.all_records()
        if r.parent is None
    ]


def timeline(rec: ServiceRecord) -> list[dict[str, Any]]:
    """The service's timeline merged with its store's alert events, in time order."""
    evs = [e.model_dump() for e in rec.events]
    for a in store_watch.events_of(store_watch.store_key(rec)):
        if a["at"] >= rec.created_at and a.get("service", rec.service) == rec.service:  # its own share alerts only
            evs.append(
                {
                    "at": a["at"],
                    "kind": a["kind"],
                    "state": "-",
                    "message": a["message"],
                    "details": {"percent": a["percent"], "threshold": a["threshold"]},
                }
            )
    return sorted(evs, key=lambda e: e["at"])


def storage_view(ctx: Context) -> dict[str, Any]:
    """The managed store (status, memory, namespaces, leftovers, its alert), every
    service's usage, the alerts: ``GET /api/storage`` and ``headway cloud status``."""
    crec = ctx.cloud
    out: dict[str, Any] = {"cloud": None, "alerts": alert_delivery.load_state()["alerts"], "services": {}}
    if crec is not None:
        usage = bounded.within(partial(store_usage.cloud_usage, crec), STORE_PROBE_S)
        if isinstance(usage, Exception):
            usage = {"namespaces": {}, "leftovers": [], "error": type(usage).__name__}
        extra = {"alert_percent": crec.alert_percent, "alert": store_watch.alert_of("cloud")}
        out["cloud"] = cloud_setup.status(crec) | usage | extra
    for rec in records.all_records():
        if rec.gcs_ft:
            out["services"][rec.name] = observe_storage(ctx, rec)
    return out


def endpoint_token_view(rec: ServiceRecord) -> dict[str, Any]:
    """The endpoint's token, as ``headway token`` and ``GET .../token`` show it; an open
    endpoint has none to show."""
    if not rec.spec.query_auth_token_enabled:
        raise InputError(f"service {rec.name} has query_auth_token_enabled: false; its endpoint needs no token")
    return {"token": endpoint.token(rec.name)}


def series_view(rec: ServiceRecord, minutes: float, now: float) -> dict[str, Any]:
    """The service's history over the last ``minutes``: its points (one per period) and the
    head failures, recoveries and rollouts in that window."""
    since = now - minutes * 60
    return {
        "period_s": series.PERIOD_S,
        "points": series_store.points(rec.name, since),
        "marks": series.marks([e.model_dump() for e in rec.events], since),
    }
