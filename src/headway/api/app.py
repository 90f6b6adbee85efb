"""The control plane's REST API, web dashboard and Prometheus metrics (FastAPI): the app,
its token checks and error statuses; the routes are in ``routes_services``,
``routes_rollout`` and ``routes_platform``.

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

from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from headway.api import api_gate, routes_platform, routes_rollout, routes_services
from headway.control.operations import Operations
from headway.model import errors
from headway.state import db


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

    app.include_router(routes_services.router(ops, auth))
    app.include_router(routes_rollout.router(ops, auth))
    app.include_router(routes_platform.router(auth, [Depends(may_read_metrics)]))

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
