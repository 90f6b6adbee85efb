"""The REST routes of services: list, read, deploy or update, scale, versions and their
configs, rollback, terminate, an operation's progress, the timeline, nodes, logs and the
endpoint's token. A change answers 202 with an operation to poll; a read answers at once."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from headway.api.reads import record_or_404, status_of
from headway.control import changes, head_guard, logs, operations, preflight, token_rotation, versions, views
from headway.control.context import Context
from headway.control.operations import Operations
from headway.model import errors
from headway.model.spec import MAX_WORKERS, ServiceSpec, SpecError
from headway.model.spec_load import load_spec_text, parse_spec
from headway.plan import series
from headway.state import records, uploads
from headway.store import cloud


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DeployRequest(_Request):
    yaml: str | None = Field(None, description="the service YAML as text")
    spec: dict[str, Any] | None = Field(None, description="or the spec as an object (the YAML's fields)")
    source: str | None = Field(None, max_length=256, description="what error messages call the input (a file name)")
    package: str | None = Field(None, description="the working_dir as a base64 zip (the CLI packages it)")
    files: dict[str, str] = Field(default_factory=dict, description="contents of the files the spec names, by field")
    env: dict[str, str] = Field(default_factory=dict, description="value of the variable redis_password_env names")
    strict: bool = False
    wait: bool = Field(False, description="if the head is recovering, wait for it, then apply")
    wait_timeout: float = Field(600.0, ge=0, le=86_400)
    strategy: Literal["in_place", "rollout"] | None = Field(None, description="how an update is applied")
    canary_percent: int | None = Field(None, ge=1, le=99, description="a rollout stops there until promoted")
    max_surge_percent: int | None = Field(None, ge=1, le=100, description="extra workers a rollout may start")


class RollbackRequest(_Request):
    to: int | None = Field(None, ge=1, description="the version; default: the last one that ran before this one")


@dataclass
class LogQuery:
    """Which log, from the query string (``/logs`` and ``/logs/follow`` alike)."""

    node: str | None = None
    app: str | None = None
    controller: bool = False
    ingress: bool = False
    lines: int | None = None
    since: str | None = None

    def source(self) -> logs.Source:
        return logs.Source(self.node, self.app, self.controller, self.ingress, logs.since_of(self.since))

    def line_count(self) -> int:
        return logs.lines_wanted(self.lines, logs.since_of(self.since))


class RotateRequest(_Request):
    grace_s: float = Field(
        token_rotation.DEFAULT_GRACE_S,
        ge=0,
        le=token_rotation.MAX_GRACE_S,
        description="how long the token it replaces is still accepted",
    )


class ScaleRequest(_Request):
    group: str = Field(max_length=64)
    count: int = Field(ge=0, le=MAX_WORKERS)
    wait: bool = False
    wait_timeout: float = Field(600.0, ge=0, le=86_400)


def router(ops: Operations, auth: list) -> APIRouter:
    """The routes, each behind ``auth``; changes run as operations of ``ops``."""
    router = APIRouter()

    @router.get("/api/services", dependencies=auth, tags=["services"])
    def list_services() -> list[dict[str, Any]]:
        return views.service_list()

    @router.get("/api/services/{name}", dependencies=auth, tags=["services"])
    def get_service(name: str) -> dict[str, Any]:
        return status_of(record_or_404(name))

    @router.put("/api/services/{name}", dependencies=auth, tags=["services"], status_code=202)
    def deploy(name: str, body: DeployRequest) -> dict[str, Any]:
        """Deploy the service, or update it if it exists. Answers with an operation to poll."""
        spec = _spec_of(name, body)
        try:
            if uploads.needs_package(spec) != (body.package is not None):
                raise uploads.UploadError(
                    "working_dir names a local folder: upload it as 'package' (the CLI does)"
                    if body.package is None
                    else "package: uploaded, but the spec's working_dir is no local folder"
                )
            spec = uploads.store_files(spec, body.files)
            package_uri = uploads.store_package(name, body.package) if body.package is not None else None
        except uploads.UploadError as exc:
            raise HTTPException(422, str(exc)) from None
        existing = records.load(name)
        if existing is not None and not body.wait:
            try:
                head_guard.refuse_while_recovering(Context.load(), existing)
            except errors.HeadRecovering as exc:
                raise HTTPException(409, str(exc)) from None
        work = operations.deploy(
            spec, body.strict, body.wait, body.wait_timeout, body.env, package_uri, strategy=body.strategy
        )
        return ops.start("deploy", name, work, body.env).view()

    @router.post("/api/services/{name}/validate", dependencies=auth, tags=["services"], status_code=202)
    def validate(name: str, body: DeployRequest) -> dict[str, Any]:
        """Every check a deploy runs before it starts anything (placement, requirements, the
        store, the hosts), and what it would do; starts nothing. The working_dir's import
        paths are the caller's to check (the package is not sent). An operation to poll."""
        spec = _spec_of(name, body)

        def work(op: operations.Operation) -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="hwvalidate-") as folder:
                checked = uploads.store_files(spec, body.files, Path(folder))
                return preflight.dry_run(Context.load(), checked, body.strict, op.progress)

        return ops.start("validate", name, work, body.env).view()

    @router.post("/api/services/{name}/scale", dependencies=auth, tags=["services"], status_code=202)
    def scale(name: str, body: ScaleRequest) -> dict[str, Any]:
        rec = record_or_404(name)
        try:
            spec = changes.scaled_spec(rec, body.group, body.count)
        except errors.DeployError as exc:
            raise HTTPException(422, str(exc)) from None
        if not body.wait:
            try:
                head_guard.refuse_while_recovering(Context.load(), rec)
            except errors.HeadRecovering as exc:
                raise HTTPException(409, str(exc)) from None
        work = operations.deploy(
            spec, False, body.wait, body.wait_timeout, {}, None, f"scale {body.group} to {body.count}"
        )  # stored secrets serve
        return ops.start("scale", name, work, {}).view()

    @router.get("/api/services/{name}/versions", dependencies=auth, tags=["services"])
    def list_versions(name: str) -> dict[str, Any]:
        """Every version on record (newest last), and which one is desired and which runs."""
        return views.versions_view(record_or_404(name))

    @router.get("/api/services/{name}/config", dependencies=auth, tags=["services"])
    def deployed_config(name: str, version: int | None = None) -> dict[str, Any]:
        """The spec of a version (default: the running one), secrets masked."""
        return views.config_view(record_or_404(name), version)

    @router.post("/api/services/{name}/rollback", dependencies=auth, tags=["services"], status_code=202)
    def rollback(name: str, body: RollbackRequest | None = None) -> dict[str, Any]:
        """Deploy an earlier version again (default: the last one that ran before the running one)."""
        rec = record_or_404(name)
        to = body.to if body else None
        versions.rollback_target(name, rec.running_version, to)  # 422 at once for an unknown version
        return ops.start("rollback", name, operations.rollback(name, to), {}).view()

    @router.delete("/api/services/{name}", dependencies=auth, tags=["services"], status_code=202)
    def terminate(name: str) -> dict[str, Any]:
        record_or_404(name)
        return ops.start("terminate", name, operations.terminate(name), {}).view()

    @router.get("/api/operations/{op_id}", dependencies=auth, tags=["services"])
    def operation(op_id: str, since: int = 0) -> dict[str, Any]:
        """A change's progress lines (from line ``since``), and once done its exit code."""
        op = ops.get(op_id)
        if op is None:
            raise HTTPException(404, f"no operation {op_id} (operations end with the control plane)")
        return op.view(since)

    @router.get("/api/services/{name}/events", dependencies=auth, tags=["timeline"])
    def events(name: str) -> list[dict[str, Any]]:
        return views.timeline(record_or_404(name))

    @router.get("/api/services/{name}/series", dependencies=auth, tags=["timeline"])
    def history(name: str, minutes: Annotated[float, Query(gt=0, le=series.RETENTION_S / 60)] = 60) -> dict[str, Any]:
        """One point per 10 s: requests, 5xx, p50/p99 (ms), nodes, replicas, state; and marks."""
        return views.series_view(record_or_404(name), minutes, time.time())

    @router.get("/api/services/{name}/nodes", dependencies=auth, tags=["nodes"])
    def nodes(name: str) -> list[dict[str, Any]]:
        return views.observe(Context.load(), record_or_404(name))["nodes"]

    @router.get("/api/services/{name}/logs", dependencies=auth, tags=["nodes"])
    def service_logs(name: str, q: Annotated[LogQuery, Depends()]) -> list[dict[str, str]]:
        """The service's log lines, each with its time and node, merged by time: every
        node's and the endpoint's (default), one node's, or one application's replicas;
        the last ``lines`` (default 100, or all of a ``since`` window such as ``10m``;
        at most 20,000). Or the controller's lines about the service, or HAProxy's log."""
        return logs.read(Context.load(), record_or_404(name), q.source(), q.line_count())

    @router.get("/api/services/{name}/logs/follow", dependencies=auth, tags=["nodes"])
    async def follow_logs(name: str, q: Annotated[LogQuery, Depends()]) -> StreamingResponse:
        """The same log as ``/logs``, then what is appended to it, as plain text while the
        caller reads (``headway logs -f`` from another host). Ends when the caller goes."""
        rec = record_or_404(name)
        stop = threading.Event()
        chunks = logs.follow(Context.load(), rec, q.source(), q.line_count(), stop)
        # The first chunk here: a wrong node or application is a 422 (an InputError), not a broken stream.
        first = await run_in_threadpool(next, chunks, "")

        async def text() -> AsyncIterator[str]:
            try:
                yield first
                while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
                    yield chunk
            finally:
                stop.set()

        return StreamingResponse(text(), media_type="text/plain; charset=utf-8")

    @router.post("/api/services/{name}/token/rotate", dependencies=auth, tags=["services"], status_code=202)
    def rotate_token(name: str, body: RotateRequest | None = None) -> dict[str, Any]:
        """A new endpoint token (the operation's result); the previous one is accepted for
        ``grace_s`` more seconds (an hour without a body), then refused. Neither change
        drops a request."""
        record_or_404(name)
        grace_s = (body or RotateRequest()).grace_s
        return ops.start("token rotation", name, operations.rotate_token(name, grace_s), {}).view()

    @router.get("/api/services/{name}/token", dependencies=auth, tags=["services"])
    def endpoint_token(name: str) -> dict[str, Any]:
        return views.endpoint_token_view(record_or_404(name))  # an open endpoint: 422

    return router


def _spec_of(name: str, body: DeployRequest) -> ServiceSpec:
    """The validated spec a deploy or a validation names, or a 422 that says what is wrong."""
    source = body.source or f"service {name}"
    has_store = cloud.default_store_available()
    try:
        if body.yaml is not None:
            spec = load_spec_text(body.yaml, source, None, has_default_store=has_store, name=name)
        elif body.spec is not None:
            spec = parse_spec(body.spec, source, has_default_store=has_store, name=name)
        else:
            raise HTTPException(422, "give the service as 'yaml' (text) or 'spec' (object)")
    except SpecError as exc:
        raise HTTPException(422, str(exc)) from None
    if spec.name != name:
        raise HTTPException(422, f"the spec names service {spec.name!r}, the URL {name!r}; make them agree")
    overrides = {k: v for k in ("canary_percent", "max_surge_percent") if (v := getattr(body, k)) is not None}
    spec = spec.model_copy(update=overrides)
    wanted = spec.ray_gcs_external_storage_config.redis_password_env
    stray = sorted(k for k in body.env if k != wanted)
    if stray:
        raise HTTPException(
            422,
            f"env: {', '.join(stray)} is not the variable the spec's redis_password_env names; send only that one",
        )
    return spec
