"""The control plane's REST API, web dashboard and Prometheus metrics (FastAPI).

Served by the controller process (``HEADWAY_API_BIND``:``HEADWAY_API_PORT``, default
127.0.0.1:8765). Every ``/api`` route and ``/metrics`` need ``Authorization: Bearer
<token>``; the token is generated at the first start and kept in the state database
(mode 0600); ``headway api token`` prints it. The dashboard page itself holds no data:
its script asks the API with the token the user gives it (``headway dashboard`` prints
a URL that carries it in the fragment, which browsers never send to a server).

Changes (deploy/update, scale, terminate) answer 202 with an operation to poll; reads
answer at once. Errors: 401 bad token, 404 unknown service, 409 refused for now (the
head recovers) or busy, 422 invalid YAML or spec.
"""

from __future__ import annotations

import ipaddress
import os
from importlib import resources
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from headway.api import api_gate, api_rollout
from headway.control import changes, chaos, head_guard, logs, operations, store_usage, store_watch, versions, views
from headway.control.operations import Operations
from headway.ingress import endpoint as ingress
from headway.model import errors
from headway.model.spec import MAX_WORKERS, SpecError
from headway.model.spec_load import load_spec_text, parse_spec
from headway.plan import metrics
from headway.state import daemon_info, db, records, state_snapshot, uploads
from headway.state.records import ServiceRecord
from headway.store import cloud, cloud_setup

DEFAULT_PORT = 8765


def bind() -> tuple[str, int]:
    return os.environ.get("HEADWAY_API_BIND", "127.0.0.1"), int(os.environ.get("HEADWAY_API_PORT", DEFAULT_PORT))


def tls_files() -> tuple[str, str] | None:
    """The API's certificate and key (``HEADWAY_API_TLS_CERT``/``_KEY``), if given."""
    cert, key = os.environ.get("HEADWAY_API_TLS_CERT"), os.environ.get("HEADWAY_API_TLS_KEY")
    return (cert, key) if cert and key else None


def bind_refusal(host: str, tls: bool) -> str | None:
    """Why the API may not listen on ``host``: beyond loopback only with TLS, or the token
    (the key to every service) would cross the network in clear text."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback or tls:
        return None
    return (
        f"HEADWAY_API_BIND={host} is not loopback: the API needs TLS there; set HEADWAY_API_TLS_CERT and "
        "HEADWAY_API_TLS_KEY (a certificate and its key), or bind to 127.0.0.1"
    )


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


class ScaleRequest(_Request):
    group: str = Field(max_length=64)
    count: int = Field(ge=0, le=MAX_WORKERS)
    wait: bool = False
    wait_timeout: float = Field(600.0, ge=0, le=86_400)


def _record(name: str) -> ServiceRecord:
    rec = records.load(name)
    if rec is None:
        raise HTTPException(404, f"no service named {name}; GET /api/services lists them")
    return rec


def _status(rec: ServiceRecord) -> dict[str, Any]:
    return views.observe(rec) | {"controller_pid": daemon_info.running_pid()}


def create_app(ops: Operations | None = None) -> FastAPI:
    ops = ops or Operations()
    app = FastAPI(
        title="headway",
        description="Ray Serve services that survive the death of their head node.",
        docs_url=None,  # served below from local files: this machine may have no Internet
        version="1",
    )
    bearer = HTTPBearer(auto_error=False)

    def authorised(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if cred is None or not api_gate.matches(cred.credentials, db.get_token("api")):
            raise HTTPException(
                401,
                "missing or wrong API token ('headway api token' prints it)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def may_read_metrics(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        given = cred.credentials if cred else ""
        if not (api_gate.matches(given, db.get_token("api")) or api_gate.matches(given, db.get_token("metrics"))):
            raise HTTPException(
                401,
                "missing or wrong token ('headway api token --metrics' prints a read-only one)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(authorised)]

    try:
        import swagger_ui_bundle

        app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
        assets = "/static/swagger"
    except ImportError:  # pragma: no cover - the dependency is declared
        assets = None

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return HTMLResponse("<p>Swagger UI is not installed; the schema is at /openapi.json</p>")
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="headway API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
        )

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(resources.files("headway").joinpath("web/index.html").read_text())

    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """No token needed: is the control plane up? Nothing else (no PID, no version)."""
        return {"ok": True}

    # -- services ---------------------------------------------------------------------
    @app.get("/api/services", dependencies=auth, tags=["services"])
    def list_services() -> list[dict[str, Any]]:
        return views.service_list()

    @app.get("/api/services/{name}", dependencies=auth, tags=["services"])
    def get_service(name: str) -> dict[str, Any]:
        return _status(_record(name))

    @app.put("/api/services/{name}", dependencies=auth, tags=["services"], status_code=202)
    def deploy(name: str, body: DeployRequest) -> dict[str, Any]:
        """Deploy the service, or update it if it exists. Answers with an operation to poll."""
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
                head_guard.refuse_while_recovering(existing)
            except errors.HeadRecovering as exc:
                raise HTTPException(409, str(exc)) from None
        work = operations.deploy(
            spec, body.strict, body.wait, body.wait_timeout, body.env, package_uri, strategy=body.strategy
        )
        return ops.start("deploy", name, work, body.env).view()

    @app.post("/api/services/{name}/scale", dependencies=auth, tags=["services"], status_code=202)
    def scale(name: str, body: ScaleRequest) -> dict[str, Any]:
        rec = _record(name)
        try:
            spec = changes.scaled_spec(rec, body.group, body.count)
        except errors.DeployError as exc:
            raise HTTPException(422, str(exc)) from None
        if not body.wait:
            try:
                head_guard.refuse_while_recovering(rec)
            except errors.HeadRecovering as exc:
                raise HTTPException(409, str(exc)) from None
        work = operations.deploy(
            spec, False, body.wait, body.wait_timeout, {}, None, f"scale {body.group} to {body.count}"
        )  # stored secrets serve
        return ops.start("scale", name, work, {}).view()

    @app.get("/api/services/{name}/versions", dependencies=auth, tags=["services"])
    def list_versions(name: str) -> dict[str, Any]:
        """Every version on record (newest last), and which one is desired and which runs."""
        return views.versions_view(_record(name))

    @app.get("/api/services/{name}/config", dependencies=auth, tags=["services"])
    def deployed_config(name: str, version: int | None = None) -> dict[str, Any]:
        """The spec of a version (default: the running one), secrets masked."""
        return views.config_view(_record(name), version)

    @app.post("/api/services/{name}/rollback", dependencies=auth, tags=["services"], status_code=202)
    def rollback(name: str, body: RollbackRequest | None = None) -> dict[str, Any]:
        """Deploy an earlier version again (default: the last one that ran before the running one)."""
        rec = _record(name)
        to = body.to if body else None
        versions.rollback_target(name, rec.running_version, to)  # 422 at once for an unknown version
        return ops.start("rollback", name, operations.rollback(name, to), {}).view()

    @app.delete("/api/services/{name}", dependencies=auth, tags=["services"], status_code=202)
    def terminate(name: str) -> dict[str, Any]:
        _record(name)
        return ops.start("terminate", name, operations.terminate(name), {}).view()

    @app.get("/api/operations/{op_id}", dependencies=auth, tags=["services"])
    def operation(op_id: str, since: int = 0) -> dict[str, Any]:
        """A change's progress lines (from line ``since``), and once done its exit code."""
        op = ops.get(op_id)
        if op is None:
            raise HTTPException(404, f"no operation {op_id} (operations end with the control plane)")
        return op.view(since)

    @app.get("/api/services/{name}/events", dependencies=auth, tags=["timeline"])
    def events(name: str) -> list[dict[str, Any]]:
        return views.timeline(_record(name))

    @app.get("/api/services/{name}/nodes", dependencies=auth, tags=["nodes"])
    def nodes(name: str) -> list[dict[str, Any]]:
        return views.observe(_record(name))["nodes"]

    @app.get("/api/services/{name}/logs", dependencies=auth, tags=["nodes"])
    def service_logs(
        name: str,
        node: str | None = None,
        app: str | None = None,
        controller: bool = False,
        ingress: bool = False,
        lines: int = 100,
    ) -> list[dict[str, str]]:
        """The last ``lines`` (at most 5,000) of one log: a node's own (default: the
        head's), an application's replicas (every node), the controller's lines about the
        service, or the endpoint's HAProxy log."""
        return logs.read(_record(name), logs.Source(node, app, controller, ingress), lines)

    @app.get("/api/services/{name}/token", dependencies=auth, tags=["services"])
    def endpoint_token(name: str) -> dict[str, Any]:
        rec = _record(name)
        if not rec.spec.query_auth_token_enabled:
            raise HTTPException(422, f"service {name} has query_auth_token_enabled: false; its endpoint needs no token")
        return {"token": ingress.token(name)}

    api_rollout.add_routes(app, ops, auth)

    # -- storage ----------------------------------------------------------------------
    @app.get("/api/storage", dependencies=auth, tags=["storage"])
    def storage_view() -> dict[str, Any]:
        """The managed store (memory, namespaces, leftovers), every service's usage, alerts."""
        crec = cloud.load()
        out: dict[str, Any] = {"cloud": None, "alerts": store_watch.load_state()["alerts"], "services": {}}
        if crec is not None:
            usage = store_usage.cloud_usage(crec)
            out["cloud"] = cloud_setup.status(crec) | usage | {"alert_percent": crec.alert_percent}
        for rec in records.all_records():
            if rec.gcs_ft:
                out["services"][rec.name] = views.observe_storage(rec)
        return out

    # -- chaos ------------------------------------------------------------------------
    def _chaos(name: str, role: str, node: str | None) -> dict[str, Any]:
        try:
            return chaos.crash(_record(name), role, node)
        except errors.DeployError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/api/services/{name}/chaos/kill-head", dependencies=auth, tags=["chaos"])
    def kill_head(name: str) -> dict[str, Any]:
        return _chaos(name, "head", None)

    @app.post("/api/services/{name}/chaos/kill-worker", dependencies=auth, tags=["chaos"])
    def kill_worker(name: str, node: str | None = None) -> dict[str, Any]:
        return _chaos(name, "worker", node)

    # -- metrics ----------------------------------------------------------------------
    @app.get("/metrics", dependencies=[Depends(may_read_metrics)], response_class=PlainTextResponse, tags=["meta"])
    def prometheus() -> PlainTextResponse:
        views = [_status(r) | {"events": [e.model_dump() for e in r.events]} for r in records.all_records()]
        body = metrics.render(views, state_snapshot.size())
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @app.exception_handler(ValueError)
    def input_error(_: Request, exc: ValueError) -> JSONResponse:
        detail = str(exc)
        if isinstance(exc, ValidationError):
            detail = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RuntimeError)
    def runtime_error(_: Request, exc: RuntimeError) -> JSONResponse:
        """Said as it is, with the status its type decides (``errors``): a busy service is
        409, a failure of the world 503 — never an 'internal error' for a known failure."""
        return JSONResponse({"detail": str(exc)}, status_code=errors.http_status_of(exc))

    return app
