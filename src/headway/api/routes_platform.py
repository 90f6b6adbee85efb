"""The REST routes of the platform around the services: the store's state and alerts,
chaos (kill a head or a worker, for demos), and the Prometheus metrics (readable with
the read-only metrics token too)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

from headway.api.reads import record_or_404, status_of
from headway.control import chaos, ray_metrics, store_usage, views
from headway.control.context import Context
from headway.model import errors
from headway.plan import metrics
from headway.state import records, state_snapshot


def router(auth: list, metrics_auth: list) -> APIRouter:
    """The routes behind ``auth``; ``/metrics`` behind ``metrics_auth``."""
    router = APIRouter()

    # -- storage ----------------------------------------------------------------------
    @router.get("/api/storage", dependencies=auth, tags=["storage"])
    def storage_view() -> dict[str, Any]:
        """The managed store (memory, namespaces, leftovers), every service's usage, alerts."""
        return views.storage_view(Context.load())

    @router.delete("/api/storage/namespaces/{namespace}", dependencies=auth, tags=["storage"])
    def storage_cleanup(namespace: str) -> dict[str, Any]:
        """Delete a leftover namespace (one no service uses) from the managed store."""
        removed = store_usage.cleanup_leftover(Context.load().cloud, namespace)  # refused: an InputError, 422
        return {"namespace": namespace, "removed_keys": removed}

    # -- chaos ------------------------------------------------------------------------
    def _chaos(name: str, role: str, node: str | None) -> dict[str, Any]:
        try:
            return chaos.crash(Context.load(), record_or_404(name), role, node)
        except errors.DeployError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.post("/api/services/{name}/chaos/kill-head", dependencies=auth, tags=["chaos"])
    def kill_head(name: str) -> dict[str, Any]:
        return _chaos(name, "head", None)

    @router.post("/api/services/{name}/chaos/kill-worker", dependencies=auth, tags=["chaos"])
    def kill_worker(name: str, node: str | None = None) -> dict[str, Any]:
        return _chaos(name, "worker", node)

    # -- metrics ----------------------------------------------------------------------
    @router.get("/metrics", dependencies=metrics_auth, response_class=PlainTextResponse, tags=["meta"])
    def prometheus() -> PlainTextResponse:
        views = [status_of(r) | {"events": [e.model_dump() for e in r.events]} for r in records.all_records()]
        body = metrics.render(views, state_snapshot.size())
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @router.get("/metrics/ray", dependencies=metrics_auth, response_class=PlainTextResponse, tags=["meta"])
    def ray_metrics_federated() -> PlainTextResponse:
        """Every node's Ray and Serve metrics, labelled with service, cluster and node."""
        return PlainTextResponse(ray_metrics.federated(), media_type="text/plain; version=0.0.4")

    return router
