"""Deploy and query Serve applications through the head's dashboard REST API.

The CLI never joins the cluster as a Ray driver: everything goes over HTTP to the
dashboard (``PUT /api/serve/applications/``), which works the same from any host.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from headway.cluster.ray_node import GRPC_PORT
from headway.model.errors import Failed
from headway.model.requirements import without_packages
from headway.model.spec import ServiceSpec
from headway.state.records import NodeRecord, ServiceRecord

APPS_PATH = "/api/serve/applications/"

APPS_RUNNING_TIMEOUT_S = 180
PROXIES_HEALTHY_TIMEOUT_S = 60


class ServeError(Failed):
    pass


@dataclass(frozen=True)
class HeadApi:
    """Where the head's dashboard answers, and the cluster's Ray token it wants."""

    url: str
    token: str | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def serve_config(
    spec: ServiceSpec,
    working_dir_uri: str | None,
    http_port: int,
    deps_uris: dict[str, str] | None = None,
    grpc_port: int | None = None,
) -> dict[str, Any]:
    """The Serve deploy config for a service: a proxy on every node.

    Serve takes one listen address for every node, so the proxies listen on all of a
    node's addresses; the node's packet filter admits only the ingress host to that
    port (``firewall``), so the endpoint's token cannot be bypassed.

    The working_dir package (a ``file://`` zip every node can read) is the default
    ``runtime_env.working_dir`` of every application that names none. An application's
    packages come resolved and packaged by the control host (``deps_uris``: app name →
    ``file://`` zip, a ``py_modules`` entry), never installed by the nodes.
    """
    apps = []
    for app in spec.applications:
        runtime_env = without_packages(app.runtime_env)
        if deps_uris and app.name in deps_uris:
            runtime_env["py_modules"] = [*runtime_env.get("py_modules", []), deps_uris[app.name]]
        if working_dir_uri and "working_dir" not in runtime_env:
            runtime_env["working_dir"] = working_dir_uri
        if spec.env_vars:
            runtime_env["env_vars"] = {**spec.env_vars, **runtime_env.get("env_vars", {})}
        entry: dict[str, Any] = {
            "name": app.name,
            "import_path": app.import_path,
            "route_prefix": app.route_prefix,
            "args": app.args,
            "runtime_env": runtime_env,
        }
        if app.deployments:
            entry["deployments"] = app.deployments
        if app.logging_config is not None:
            entry["logging_config"] = app.logging_config
        apps.append(entry)
    http: dict[str, Any] = {"host": "0.0.0.0", "port": http_port}
    if spec.http_options.request_timeout_s:
        http["request_timeout_s"] = spec.http_options.request_timeout_s
    if spec.http_options.keep_alive_timeout_s:
        http["keep_alive_timeout_s"] = spec.http_options.keep_alive_timeout_s
    config: dict[str, Any] = {"proxy_location": "EveryNode", "http_options": http, "applications": apps}
    grpc = spec.grpc_options
    if grpc.enabled:  # each worker's proxy serves gRPC on its own port (the node's env)
        config["grpc_options"] = {
            "port": grpc_port or GRPC_PORT,
            "grpc_servicer_functions": grpc.grpc_servicer_functions,
            "enable_reflection": grpc.enable_reflection,
        } | ({"request_timeout_s": grpc.request_timeout_s} if grpc.request_timeout_s else {})
    if spec.logging_config is not None:
        config["logging_config"] = spec.logging_config
    return config


def put_applications(head: HeadApi, config: dict[str, Any], timeout_s: float = 60) -> None:
    try:
        resp = httpx.put(head.url + APPS_PATH, json=config, headers=head.headers(), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ServeError(f"cannot reach the head's dashboard at {head.url}: {exc}") from None
    if resp.status_code != 200:
        raise ServeError(f"the head refused the Serve config ({resp.status_code}): {resp.text[:2000]}")


def get_applications(head: HeadApi, timeout_s: float = 5) -> dict[str, Any] | None:
    """Serve's view of every application, or None when the dashboard is unreachable."""
    try:
        resp = httpx.get(head.url + APPS_PATH, headers=head.headers(), timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    return resp.json()


def app_statuses(details: dict[str, Any] | None) -> dict[str, str]:
    if not details:
        return {}
    return {name: app.get("status", "UNKNOWN") for name, app in details.get("applications", {}).items()}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def app_messages(details: dict[str, Any] | None) -> dict[str, str]:
    """Serve's message per application (why it failed), without terminal colour codes."""
    if not details:
        return {}
    return {name: _ANSI.sub("", app.get("message", "")) for name, app in details.get("applications", {}).items()}


#: How long one read of the applications may take while a deploy waits: a head starting
#: the replicas of a large service on a busy machine answers slowly, not never.
APPS_READ_WITHIN_S = 20


def wait_running(
    head: HeadApi, names: list[str], timeout_s: float, on_progress=None, partial_ok: bool = False
) -> dict[str, str]:
    """Poll until every named application is RUNNING; fail fast on DEPLOY_FAILED; give up
    after ``timeout_s`` without progress. A replica more running is progress: a large
    service starts its replicas a few at a time, and that is not a stall (24 workers on 2
    cores took 85 s here, and twice that on a slower machine).
    ``partial_ok``: DEPLOYING is enough once every deployment runs a replica (a rollout's
    new cluster starts smaller than its version under a surge cap: the rest fits later).
    ``on_progress(statuses, running, target)``: each change of a status or of the count of
    running replicas (of all the deployments' target)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    shown: tuple | None = None
    most_running, unanswered_since = 0, None
    while time.monotonic() < deadline:
        details = get_applications(head, APPS_READ_WITHIN_S)
        if details is None:
            unanswered_since = unanswered_since or time.monotonic()
            time.sleep(0.5)
            continue
        unanswered_since = None
        statuses = app_statuses(details)
        deps = [d for app in replicas(details).values() for d in app.values()]
        running, target = sum(d["running"] for d in deps), sum(d["target"] or 0 for d in deps)
        if (statuses, running, target) != shown and on_progress:
            on_progress(statuses, running, target)  # each status and each replica more, said
        shown, last = (statuses, running, target), statuses
        failed = [n for n in names if statuses.get(n) == "DEPLOY_FAILED"]
        if failed:
            msgs = app_messages(details)
            detail = "; ".join(f"{n}: {msgs.get(n, '')[-1500:]}" for n in failed)
            raise ServeError(f"application(s) failed to deploy: {detail}")
        if names and all(statuses.get(n) == "RUNNING" for n in names):
            return statuses
        if running > most_running:
            most_running, deadline = running, time.monotonic() + timeout_s
        serving = bool(deps) and all(d["running"] > 0 for d in deps)
        if partial_ok and names and serving and all(statuses.get(n) in ("RUNNING", "DEPLOYING") for n in names):
            return statuses
        time.sleep(0.5)
    silent = (
        f"; the head's dashboard has not answered for {time.monotonic() - unanswered_since:.0f} s"
        if unanswered_since
        else ""
    )
    raise ServeError(
        f"applications not RUNNING, and no replica started, in the last {timeout_s:.0f} s: {last}"
        f" ({most_running} replica(s) running){silent}"
    )


def proxy_health(proxy_url: str, timeout_s: float = 2) -> int | None:
    """The HTTP status of a proxy's /-/healthz, or None when nothing listens.

    A worker's proxy answers 200 only once it can route to running replicas; 503 before.
    """
    try:
        return httpx.get(proxy_url + "/-/healthz", timeout=timeout_s).status_code
    except httpx.HTTPError:
        return None


def wait_proxies(proxy_urls: list[str], timeout_s: float, grace_s: float = 15) -> list[str]:
    """Applications RUNNING does not mean every node's proxy listens yet: wait for each.

    A proxy that listens but stays unhealthy for ``grace_s`` (a worker that holds no
    replica) is accepted; those are returned so the caller can say so.
    """
    deadline = time.monotonic() + timeout_s
    listening_since: dict[str, float] = {}
    pending = list(proxy_urls)
    idle: list[str] = []
    while pending and time.monotonic() < deadline:
        still = []
        for url in pending:
            code = proxy_health(url)
            now = time.monotonic()
            if code == 200:
                continue
            if code is not None:
                listening_since.setdefault(url, now)
                if now - listening_since[url] >= grace_s:
                    idle.append(url)
                    continue
            still.append(url)
        pending = still
        if pending:
            time.sleep(0.3)
    if pending:
        raise ServeError(f"proxies not listening after {timeout_s:.0f} s: {', '.join(pending)}")
    return idle


def dashboard_up(head: HeadApi, timeout_s: float = 2) -> bool:
    """The head's dashboard answers with Serve's REST API loaded (``/api/ray/version`` is
    that module's own route)."""
    try:
        return httpx.get(head.url + "/api/ray/version", headers=head.headers(), timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_dashboard(head: HeadApi, timeout_s: float, check=lambda: None) -> None:
    """Updates go through the dashboard, which a new head starts 10-20 s after its GCS
    (a head counts as recovered once the GCS and Serve's controller are back): an update
    right after a recovery waits for it here. ``check`` is a safe point (cancellation)."""
    deadline = time.monotonic() + timeout_s
    while not dashboard_up(head):
        check()
        if time.monotonic() > deadline:
            raise ServeError(f"the head's dashboard at {head.url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


def replicas(details: dict[str, Any] | None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per application and deployment: RUNNING replicas, the target count, their nodes."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for app_name, app in ((details or {}).get("applications") or {}).items():
        for dep_name, dep in (app.get("deployments") or {}).items():
            running = [r for r in dep.get("replicas") or [] if r.get("state") == "RUNNING"]
            out.setdefault(app_name, {})[dep_name] = {
                "running": len(running),
                "target": dep.get("target_num_replicas"),
                "node_ids": sorted({r.get("node_id") for r in running if r.get("node_id")}),
                "pids": sorted(r.get("pid") for r in running if r.get("pid")),
            }
    return out


def full_replicas(details: dict[str, Any] | None) -> bool:
    """Every deployment of every application runs its target number of replicas."""
    deps = [d for app in replicas(details).values() for d in app.values()]
    return bool(deps) and all(d["target"] is not None and d["running"] >= d["target"] for d in deps)


def workers_with_replicas(rec: ServiceRecord, placed: dict[str, dict[str, dict[str, Any]]]) -> list[NodeRecord]:
    """The workers that run at least one replica (by Ray node id; by all when ids are unknown)."""
    ids = {nid for deps in placed.values() for d in deps.values() for nid in d.get("node_ids", [])}
    return [w for w in rec.workers if w.node_id is None or w.node_id in ids]


def head_api(rec: ServiceRecord) -> HeadApi:
    """A service's head dashboard, with its cluster's Ray token (kept in the state db)."""
    return HeadApi(rec.dashboard_url, rec.ray_token)
