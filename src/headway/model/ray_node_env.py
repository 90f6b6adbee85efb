"""The environment of every Ray node headway starts: pure data, one place.

Three kinds of variables, and why each is where it is:

- Ray's fault-tolerance settings (below, with the measured reason for each value).
- What a node may inherit from the process that starts it: an allow-list, not the
  controller's whole environment — that holds the API's secrets, the operator's
  shell variables and whatever a test set; a node and the user code in it get none.
- Names headway owns (``reserved_env``): a service's ``env_vars`` may not set them,
  or a spec could move the GCS to another store, switch Ray's authentication off,
  or overwrite the marker by which terminate finds a node's processes.
"""

from __future__ import annotations

from collections.abc import Mapping

WORKER_GCS_RECONNECT_TIMEOUT_S = 600

#: Environment of every node: no telemetry leaves the machine.
COMMON_ENV: dict[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}

#: Serve/GCS settings on worker nodes that keep serving while the head is down.
WORKER_FT_ENV: dict[str, str] = {
    "RAY_gcs_rpc_server_reconnect_timeout_s": str(WORKER_GCS_RECONNECT_TIMEOUT_S),
    "RAY_SERVE_KV_TIMEOUT_S": "5",
    "RAY_gcs_server_request_timeout_seconds": "5",
    "RAY_timeout_ms_task_wait_for_death_info": "0",
}

#: Node-death detection by the GCS (it lives on the head). Ray's defaults (a check
#: every 3 s, 10 s timeout, 5 failures) take 15-20 s to declare a dead worker; until
#: then Serve keeps routing to its replicas and cannot re-place them. Checking every
#: second and declaring after 3 misses of 1 s each marks a dead node in about 3-6 s;
#: the 5 s initial delay leaves a freshly started or re-adopted raylet time to answer.
HEALTH_CHECK_ENV: dict[str, str] = {
    "RAY_health_check_initial_delay_ms": "5000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}

#: Same Serve settings on the head, whose controller reads the KV; and the GCS's health checks.
HEAD_FT_ENV: dict[str, str] = {
    "RAY_SERVE_KV_TIMEOUT_S": "5",
    "RAY_gcs_server_request_timeout_seconds": "5",
} | HEALTH_CHECK_ENV

#: Ray's token authentication (Ray 2.60): every gRPC server (GCS, raylets, workers, the
#: Ray Client server) and the dashboard's HTTP API refuse a caller without the token,
#: which each node reads from a 0600 file (never from an argument or a variable's value).
AUTH_MODE_VAR = "RAY_AUTH_MODE"
AUTH_TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"

#: What a node inherits from the process that starts it, and nothing else.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_RESERVED_PREFIXES = ("HEADWAY_", "RAY_REDIS_", "RAY_AUTH_")
_RESERVED_NAMES = (
    {
        "RAY_external_storage_namespace",
        "RAY_ADDRESS",
        "RAY_SERVE_WORKER_PROXY_HTTP_PORT",
        "RAY_SERVE_WORKER_PROXY_GRPC_PORT",
    }
    | set(COMMON_ENV)
    | set(WORKER_FT_ENV)
    | set(HEAD_FT_ENV)
)


def reserved_env(key: str) -> str | None:
    """Why headway owns ``key`` (a short reason), or None when a service may set it."""
    if key.startswith(_RESERVED_PREFIXES):
        return "its markers, the GCS store and Ray's authentication"
    if key in _RESERVED_NAMES:
        return "a GCS fault-tolerance setting"
    return None


def inherited(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` a node may see."""
    return {k: environ[k] for k in INHERITED if k in environ}
