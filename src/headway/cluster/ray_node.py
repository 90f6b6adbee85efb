"""The exact ``ray start`` command line and environment of a head or a worker.

This is the one place for the facts about Ray that fault tolerance rests on
(see DESIGN.md); nothing else in headway builds a Ray command line.

- GCS FT: the head gets ``RAY_REDIS_ADDRESS`` (``rediss://`` for TLS), the password
  and username as flags, and ``RAY_external_storage_namespace``.
- The head has 0 CPUs so that no replica lands on it.
- Workers outlive a head outage: ``RAY_gcs_rpc_server_reconnect_timeout_s`` is raised
  from Ray's 60 s (after which every worker exits) to 600 s, as KubeRay does.
- Serve knobs for services (KubeRay's): KV and GCS request timeouts of 5 s and no wait
  for death info, so that a dead replica's callers fail fast instead of hanging while
  the head is down.
- Several nodes on one IP (loopback mode) need distinct agent/metrics/manager ports,
  temp dirs and ``RAY_SERVE_WORKER_PROXY_HTTP_PORT``.
- What a service does not use is not started (``LEAN_FLAGS``): Ray's autoscaler monitor
  on the head (headway decides the nodes; ~49 MB, and one more process to boot in a
  recovery) and the log monitor on every node (~46 MB each: it copies worker output to
  drivers, and a service has no driver; replica logs stay in files, read by Ray's log
  API); and ``ray start --block`` (~90 MB on every node), replaced by
  ``node_supervisor`` (a few MB), which also stops the Ray Client server once the head is
  up (Ray 2.60 starts it whenever ``ray[client]`` is installed and takes no port that
  disables it; ~47 MB). Of the dashboard, only the modules a service uses
  (``DASHBOARD_MODULES``): Serve's REST API, which deploys and reads the applications, and
  Ray's state API (``ray list ...``, ``/api/v0/nodes``), for an operator's questions. Left
  out, ~120 MB on the head measured with a bare head (each module is a process of its
  own): the node, metrics, report, event, job, train and data modules, which feed Ray's
  web UI (its pages other than Serve's are empty) and Ray's job API, which a service has
  no use for and which would run any command it is sent (the head has none to offer now,
  token or not). headway's own dashboard, metrics and logs read what they need elsewhere
  (the GCS, the nodes' metrics ports, the log files). Kept too: the dashboard's agent and
  the runtime-env agent (working_dir, packages) on every node.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from headway.model.ray_node_env import AUTH_MODE_VAR, AUTH_TOKEN_PATH_VAR, COMMON_ENV, HEAD_FT_ENV, WORKER_FT_ENV
from headway.system import binaries, node_supervisor
from headway.system.node_user import Sandbox
from headway.system.procs import MARKER_VAR

GCS_PORT = 6379
DASHBOARD_PORT = 8265
SERVE_PORT = 8000
GRPC_PORT = 9000  # each node's Serve gRPC proxy (when the service has grpc_options)
OBJECT_STORE_BYTES = 150 * 1024 * 1024
#: The dashboard modules the head loads (see the module's docstring).
DASHBOARD_MODULES = ("ServeHead", "StateHead")
#: Left out of every node / of the head (see the module's docstring).
LEAN_FLAGS = ["--include-log-monitor=false"]
LEAN_HEAD_FLAGS = ["--no-monitor"]
#: A head started to replace a dead one, on a machine it shares with the workers that serve
#: meanwhile, boots at this niceness (every process of it inherits it) and is set back to 0
#: once recovered: its boot (a dozen Python processes) competes with the replicas for the
#: CPU, and a raylet that misses Ray's 30 s registration window costs a whole new attempt.
RECOVERY_NICE = -10


@dataclass(frozen=True)
class NodePorts:
    """Ports one node binds. ``None`` leaves Ray's default (fine when each node has its own IP)."""

    gcs: int | None = None
    dashboard: int | None = None
    client_server: int | None = None
    node_manager: int | None = None
    object_manager: int | None = None
    dashboard_agent_listen: int | None = None
    dashboard_agent_grpc: int | None = None
    metrics_export: int | None = None
    runtime_env_agent: int | None = None
    proxy: int | None = None
    grpc: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class GcsStorage:
    """How the head reaches its GCS store. Secrets live in ``password``; never logged."""

    ray_address: str
    namespace: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


@dataclass(frozen=True)
class NodeLaunch:
    """How to start a node: the command, its environment, and the private files (path →
    content, mode 0600) the provider writes on the node's host before it starts."""

    argv: list[str]
    env: dict[str, str] = field(repr=False)
    secret_files: dict[str, str] = field(default_factory=dict, repr=False)
    nice: int = 0  # the CPU priority the node's processes start at (a provider sharing a machine applies it)
    sandbox: Sandbox | None = None  # the service's user and what the node may see (node_user)

    def __repr__(self) -> str:  # a launch may end up in a log: never with the password
        return f"NodeLaunch(argv={redact(self.argv)!r})"

    def boxed(self, sandbox: Sandbox, temp_dir: str) -> NodeLaunch:
        """This launch run as the service's user, with a home and temp dir of its own."""
        return dataclasses.replace(self, sandbox=sandbox, env=self.env | sandbox.env(temp_dir))

    def command(self, python: str) -> list[str]:
        """What a provider runs: this ``ray start`` by the host's ``python`` (the one that
        has Ray), under headway's node supervisor instead of ``--block`` — boxed in, as
        PID 1 of new PID and mount namespaces, when the launch has a sandbox."""
        box = self.sandbox.as_json() if self.sandbox else None
        ns = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"] if self.sandbox else []
        return ns + node_supervisor.command(python, self.argv[1:], box)


def _port_flags(ports: NodePorts, loopback: bool) -> list[str]:
    flags: list[str] = []
    pairs = [
        ("--node-manager-port", ports.node_manager),
        ("--object-manager-port", ports.object_manager),
        ("--dashboard-agent-listen-port", ports.dashboard_agent_listen),
        ("--dashboard-agent-grpc-port", ports.dashboard_agent_grpc),
        ("--metrics-export-port", ports.metrics_export),
        ("--runtime-env-agent-port", ports.runtime_env_agent),
    ]
    for flag, value in pairs:
        if value is not None:
            flags += [flag, str(value)]
    if loopback:
        # Worker processes of several nodes on one IP: let the OS pick their ports.
        flags += ["--min-worker-port", "0", "--max-worker-port", "0"]
    return flags


def _resource_flags(resources: Mapping[str, float], *, cpus: float) -> list[str]:
    flags = ["--num-cpus", str(int(cpus) if float(cpus).is_integer() else cpus)]
    gpus = resources.get("GPU")
    if gpus:
        flags += ["--num-gpus", str(int(gpus))]
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory")}
    if custom:
        flags += ["--resources", json.dumps(custom, sort_keys=True)]
    return flags


def _base_env(marker: str, node_name: str) -> dict[str, str]:
    return COMMON_ENV | {MARKER_VAR: marker, "HEADWAY_NODE_NAME": node_name}


AUTH_TOKEN_FILE = "auth_token"


def auth_token_path(temp_dir: str) -> str:
    """Where a node's copy of its cluster's Ray token lives (inside the node's temp dir)."""
    return f"{temp_dir}/{AUTH_TOKEN_FILE}"


def _auth(temp_dir: str, token: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Ray's token authentication for one node: (environment, private files)."""
    if token is None:
        return {}, {}
    path = auth_token_path(temp_dir)
    return {AUTH_MODE_VAR: "token", AUTH_TOKEN_PATH_VAR: path}, {path: token}


def head_launch(
    *,
    ip: str,
    ports: NodePorts,
    temp_dir: str,
    storage: GcsStorage | None,
    resources: Mapping[str, float],
    marker: str,
    loopback: bool,
    user_env: Mapping[str, str] = {},
    auth_token: str | None = None,
    object_store_bytes: int = OBJECT_STORE_BYTES,
    recovering: bool = False,
    storage_files: Mapping[str, str] = {},
) -> NodeLaunch:
    """The head: GCS (in the external store when ``storage`` is given), dashboard, 0 CPUs.

    The dashboard (and with it Ray's job API) listens on the node's own address only;
    with ``auth_token`` it also wants that token from every caller. ``storage_files``: the
    head's own copies of the store's TLS files (path → content), written with its token."""
    argv = [
        binaries.ray(),
        "start",
        "--head",
        "--disable-usage-stats",
        f"--node-ip-address={ip}",
        "--node-name=head",
        f"--port={ports.gcs or GCS_PORT}",
        "--include-dashboard=true",
        f"--dashboard-host={ip}",
        f"--dashboard-port={ports.dashboard or DASHBOARD_PORT}",
        f"--temp-dir={temp_dir}",
        f"--object-store-memory={object_store_bytes}",
        *LEAN_FLAGS,
        *LEAN_HEAD_FLAGS,
    ]
    if ports.client_server is not None:
        argv.append(f"--ray-client-server-port={ports.client_server}")
    argv += _resource_flags(resources, cpus=0)
    argv += _port_flags(ports, loopback)
    auth_env, files = _auth(temp_dir, auth_token)
    env = dict(user_env) | _base_env(marker, "head") | HEAD_FT_ENV | auth_env
    env[node_supervisor.DASHBOARD_MODULES_VAR] = ",".join(DASHBOARD_MODULES)
    if storage is not None:
        env["RAY_REDIS_ADDRESS"] = storage.ray_address
        env["RAY_external_storage_namespace"] = storage.namespace
        if storage.password:
            argv.append(f"--redis-password={storage.password}")
        if storage.username:
            argv.append(f"--redis-username={storage.username}")
        for var, value in (
            ("RAY_REDIS_CA_CERT", storage.ca_cert),
            ("RAY_REDIS_CLIENT_CERT", storage.client_cert),
            ("RAY_REDIS_CLIENT_KEY", storage.client_key),
        ):
            if value:
                env[var] = value
    files = files | dict(storage_files)
    return NodeLaunch(argv=argv, env=env, secret_files=files, nice=RECOVERY_NICE if recovering else 0)


def worker_launch(
    *,
    ip: str,
    head_address: str,
    ports: NodePorts,
    temp_dir: str,
    resources: Mapping[str, float],
    node_name: str,
    marker: str,
    loopback: bool,
    user_env: Mapping[str, str] = {},
    auth_token: str | None = None,
    object_store_bytes: int = OBJECT_STORE_BYTES,
) -> NodeLaunch:
    """A worker that keeps serving for 10 minutes without its head."""
    argv = [
        binaries.ray(),
        "start",
        "--disable-usage-stats",
        f"--address={head_address}",
        f"--node-ip-address={ip}",
        f"--node-name={node_name}",
        f"--temp-dir={temp_dir}",
        f"--object-store-memory={object_store_bytes}",
        *LEAN_FLAGS,
    ]
    argv += _resource_flags(resources, cpus=resources.get("CPU", 1))
    argv += _port_flags(ports, loopback)
    auth_env, files = _auth(temp_dir, auth_token)
    env = dict(user_env) | _base_env(marker, node_name) | WORKER_FT_ENV | auth_env
    if ports.proxy is not None:
        env["RAY_SERVE_WORKER_PROXY_HTTP_PORT"] = str(ports.proxy)
    if ports.grpc is not None:
        env["RAY_SERVE_WORKER_PROXY_GRPC_PORT"] = str(ports.grpc)
    return NodeLaunch(argv=argv, env=env, secret_files=files)


def redact(argv: list[str]) -> list[str]:
    """A command line safe to log."""
    return ["--redis-password=***" if a.startswith("--redis-password=") else a for a in argv]
